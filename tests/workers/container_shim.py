"""A stand-in for the `docker` and `kubectl` command lines, for tests only: no Docker daemon or Kubernetes cluster
runs on the test machines. It is NOT a container runtime: `docker run` / `kubectl apply` of a Job run the
container's command as a local process, with `python` meaning this interpreter, and an environment of only what
the call passed (plus PATH, and PYTHONPATH to this checkout, as an image with distributary installed would have).

Every call is recorded as a JSON line `{"tool", "argv", "stdin"}` in $SHIM_DIR/calls.jsonl. Failures on demand:
`docker run` of the image $SHIM_MISSING_IMAGE fails as Docker does for an image it cannot pull (exit 125);
`kubectl apply` of a Job with the image $SHIM_MISSING_IMAGE succeeds, and its pod then waits in ErrImagePull (as
on a cluster); `kubectl apply` of the image $SHIM_FORBIDDEN_IMAGE is refused (Forbidden). Supported calls: docker
run/inspect/stop, kubectl apply/get/delete, in the forms distributary.workers.containers makes.

Tests install it with `Shims(tmp_path)`: executables `docker` and `kubectl` in a folder, `env()` to put them
first on PATH, `calls(tool, command)` to read what they were called with.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = str(Path(__file__).resolve().parents[2])
HERE = Path(__file__).resolve().parent
STOP_GRACE = 10.0


def _dir() -> Path:
    return Path(os.environ["SHIM_DIR"])


def _record(tool: str, argv: list[str], stdin: str | None) -> None:
    with open(_dir() / "calls.jsonl", "a") as fh:
        fh.write(json.dumps({"tool": tool, "argv": argv, "stdin": stdin}) + "\n")


def _start(cid: str, cmd: list[str], env: dict[str, str], cwd: str | None) -> None:
    """Run the container's command under a wrapper that records its exit code in CID.exit."""
    if cmd and cmd[0] == "python":
        cmd = [sys.executable, *cmd[1:]]
    full_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": ROOT, **env}
    with open(_dir() / f"{cid}.log", "ab") as log:
        wrapper = subprocess.Popen([sys.executable, __file__, "--wrap", str(_dir()), cid, *cmd], env=full_env,
                                   cwd=cwd if cwd and os.path.isdir(cwd) else str(_dir()), stdout=log,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    (_dir() / f"{cid}.pid").write_text(str(wrapper.pid))


def _wrap(cid: str, cmd: list[str]) -> int:
    # the command gets SIGTERM too (same process group) and ends; this wrapper lives on to record how. A handler,
    # unlike SIG_IGN, is not inherited through exec.
    signal.signal(signal.SIGTERM, lambda *_: None)
    code = subprocess.call(cmd)
    _exit(cid, 128 - code if code < 0 else code)
    return 0


def _exit(cid: str, code: int) -> None:
    tmp = _dir() / f"{cid}.exit.tmp"
    tmp.write_text(str(code))
    tmp.rename(_dir() / f"{cid}.exit")


def _stop(cid: str) -> None:
    pid = int((_dir() / f"{cid}.pid").read_text())
    done = _dir() / f"{cid}.exit"
    if done.exists():
        return
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + STOP_GRACE
    while not done.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    if not done.exists():
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        _exit(cid, 137)


def docker(argv: list[str]) -> int:
    _record("docker", argv, None)
    cmd, rest = argv[0], argv[1:]
    if cmd == "run":
        env: dict[str, str] = {}
        name = cwd = None
        i = 0
        while rest[i].startswith("-"):
            flag = rest[i]
            if flag in ("--detach", "-d"):
                i += 1
                continue
            value = rest[i + 1]
            if flag in ("--env", "-e"):
                k, eq, v = value.partition("=")
                if eq:
                    env[k] = v
                elif k in os.environ:  # `--env NAME`: the value from this command line's own environment
                    env[k] = os.environ[k]
            elif flag == "--name":
                name = value
            elif flag == "--workdir":
                cwd = value
            i += 2
        image, command = rest[i], rest[i + 1:]
        if image == os.environ.get("SHIM_MISSING_IMAGE"):
            print(f"Unable to find image '{image}' locally\ndocker: Error response from daemon: pull access denied "
                  f"for {image}, repository does not exist or may require 'docker login'.", file=sys.stderr)
            return 125
        cid = uuid.uuid4().hex + uuid.uuid4().hex
        (_dir() / f"{cid}.json").write_text(json.dumps({"name": name, "image": image}))
        _start(cid, command, env, cwd)
        print(cid)
        return 0
    if cmd == "inspect":
        cid = rest[-1]
        if not (_dir() / f"{cid}.pid").exists():
            print(f"Error: No such object: {cid}", file=sys.stderr)
            return 1
        done = _dir() / f"{cid}.exit"
        print(f"exited {done.read_text()}" if done.exists() else "running 0")
        return 0
    if cmd == "stop":
        _stop(rest[-1])
        print(rest[-1])
        return 0
    print(f"docker shim: unsupported call {argv}", file=sys.stderr)
    return 2


def _opt(argv: list[str], flag: str, default: str | None = None) -> str | None:
    return argv[argv.index(flag) + 1] if flag in argv else default


def kubectl(argv: list[str], stdin: str | None) -> int:
    _record("kubectl", argv, stdin)
    cmd = argv[0]
    if cmd == "apply":
        job = json.loads(stdin or "{}")
        meta = job["metadata"]
        (container,) = job["spec"]["template"]["spec"]["containers"]
        if container["image"] == os.environ.get("SHIM_FORBIDDEN_IMAGE"):
            print(f'Error from server (Forbidden): error when creating "STDIN": jobs.batch is forbidden: User '
                  f'"shim" cannot create resource "jobs" in API group "batch" in the namespace "{meta["namespace"]}"',
                  file=sys.stderr)
            return 1
        cid = f"{meta['namespace']}.{meta['name']}"
        pull_fails = container["image"] == os.environ.get("SHIM_MISSING_IMAGE")
        (_dir() / f"{cid}.json").write_text(json.dumps({**meta, "pull_fails": pull_fails,
                                                        "image": container["image"]}))
        if pull_fails:
            (_dir() / f"{cid}.pid").write_text("0")
        else:
            env = {e["name"]: e["value"] for e in container.get("env", [])}
            _start(cid, container["command"], env, container.get("workingDir"))
        print(f"job.batch/{meta['name']}")
        return 0
    if cmd == "get":
        namespace = _opt(argv, "-n", "default")
        key, _, value = (_opt(argv, "-l") or "").partition("=")
        items = []
        for info_file in _dir().glob(f"{namespace}.*.json"):
            cid = info_file.name[:-len(".json")]
            info = json.loads(info_file.read_text())
            if info.get("labels", {}).get(key) != value or not (_dir() / f"{cid}.pid").exists():
                continue
            done = _dir() / f"{cid}.exit"
            code = int(done.read_text()) if done.exists() else None
            status = {"active": 1} if code is None else {"succeeded": 1} if code == 0 else {"failed": 1}
            items.append({"kind": "Job", "metadata": {"name": info["name"], "labels": info["labels"]},
                          "status": status})
            state = ({"waiting": {"reason": "ErrImagePull", "message": f'failed to pull image "{info["image"]}": '
                                                                       "not found"}}
                     if info["pull_fails"] else {"running": {}} if code is None else {"terminated": {"exitCode": code}})
            items.append({"kind": "Pod", "metadata": {"name": f"{info['name']}-x7k2p"},
                          "status": {"containerStatuses": [{"name": "flow-run", "state": state}]}})
        print(json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))
        return 0
    if cmd == "delete":
        name, namespace = argv[2], _opt(argv, "-n", "default")
        cid = f"{namespace}.{name}"
        if (_dir() / f"{cid}.pid").exists():
            if not json.loads((_dir() / f"{cid}.json").read_text())["pull_fails"]:
                _stop(cid)
            (_dir() / f"{cid}.pid").unlink()
            print(f'job.batch "{name}" deleted')
        return 0
    print(f"kubectl shim: unsupported call {argv}", file=sys.stderr)
    return 2


class Shims:
    """The `docker` / `kubectl` shims on PATH, and what they were called with."""

    def __init__(self, root: Path):
        self.dir = root / "shim-state"
        self.dir.mkdir()
        self.bin = root / "shim-bin"
        self.bin.mkdir()
        for tool in ("docker", "kubectl"):
            exe = self.bin / tool
            exe.write_text(f"#!{sys.executable}\nimport sys\nsys.path.insert(0, {str(HERE)!r})\n"
                           f"from container_shim import main\nsys.exit(main({tool!r}))\n")
            exe.chmod(0o755)

    def env(self, path: str | None = None) -> dict[str, str]:
        """The environment that puts the shims first on PATH (and fails the images named below)."""
        return {"SHIM_DIR": str(self.dir), "PATH": f"{self.bin}{os.pathsep}{path or os.environ['PATH']}",
                "SHIM_MISSING_IMAGE": "registry.example/missing:1",
                "SHIM_FORBIDDEN_IMAGE": "registry.example/forbidden:1"}

    def calls(self, tool: str, command: str | None = None) -> list[dict]:
        path = self.dir / "calls.jsonl"
        got = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
        return [c for c in got if c["tool"] == tool and (command is None or c["argv"][0] == command)]


def main(tool: str) -> int:
    argv = sys.argv[1:]
    if tool == "kubectl":
        return kubectl(argv, sys.stdin.read() if argv[:1] == ["apply"] else None)
    return docker(argv)


if __name__ == "__main__" and sys.argv[1:2] == ["--wrap"]:
    os.environ["SHIM_DIR"] = sys.argv[2]  # for this wrapper only: the command's environment is the container's
    sys.exit(_wrap(sys.argv[3], sys.argv[4:]))
