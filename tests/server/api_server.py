"""The real server for tests (fixtures in conftest.py): `python -m distributary server start` in its own process, on a free loopback port,
with its own DISTRIBUTARY_HOME (so its own SQLite run store), stopped by pid.

Fixture `server` yields a `ServerProcess`: `.url` (http://127.0.0.1:PORT), `.api_url` (`.url + "/api"`), `.home`
(the server's DISTRIBUTARY_HOME), `.client_env()` (the environment of a client process: its own home, and
DISTRIBUTARY_API_URL pointing at the server) and `.run_flow(code)` (runs a Python script as such a client).
`.stop()`, `.kill()` and `.start()` (same port, same store) let a test take the server away and bring it back.
`start_server(tmp_path, env=...)` starts another (auth on, PostgreSQL, ...). These names are stable: the UI
tests use them.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import httpx
from servers import free_port

REPO = Path(__file__).resolve().parents[2]
_CLEARED = ("DISTRIBUTARY_API_URL", "DISTRIBUTARY_API_AUTH_STRING", "DISTRIBUTARY_API_DATABASE_CONNECTION_URL",
            "DISTRIBUTARY_SERVER_API_AUTH_STRING", "DISTRIBUTARY_PROFILE")


def base_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _CLEARED}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])
    return env


class ServerProcess:
    """One `distributary server start` process and how to reach it."""

    def __init__(self, workdir: Path, env: dict[str, str] | None = None, port: int | None = None):
        self.workdir = Path(workdir)
        self.home = self.workdir / "server-home"
        self.client_home = self.workdir / "client-home"
        self.home.mkdir(parents=True, exist_ok=True)
        self.client_home.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.api_url = f"{self.url}/api"
        self.extra_env = dict(env or {})
        self.auth_string = self.extra_env.get("DISTRIBUTARY_SERVER_API_AUTH_STRING", "")
        self.log_path = self.workdir / "server.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._starts = 0

    # -- the process -------------------------------------------------------------------------------------------
    def start(self, timeout: float = 60.0) -> ServerProcess:
        # one server process unless a test asks for more (DISTRIBUTARY_SERVER_WORKERS): quicker to start
        env = {**base_env(), "DISTRIBUTARY_HOME": str(self.home), "DISTRIBUTARY_SERVER_WORKERS": "1",
               **self.extra_env}
        self._starts += 1
        log = open(self.log_path, "ab")  # noqa: SIM115  closed when the process is reaped
        log.write(f"--- start {self._starts}\n".encode())
        log.flush()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "distributary", "server", "start", "--host", "127.0.0.1", "--port",
             str(self.port), "--log-level", "warning"], stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO,
            start_new_session=True)
        log.close()
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        auth = tuple(self.auth_string.split(":", 1)) if self.auth_string else None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited with {self.proc.returncode}; its log:\n{self.log()[-3000:]}")
            try:
                if httpx.get(f"{self.api_url}/health", timeout=1, auth=auth).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        self.kill()
        raise TimeoutError(f"the server did not answer {self.api_url}/health within {timeout:.0f} s; "
                           f"log:\n{self.log()[-3000:]}")

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM (a graceful stop), then SIGKILL after `timeout`; the exit code."""
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            return self.proc.wait()

    def kill(self) -> None:
        """SIGKILL: the server goes away without a word."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    # -- clients -----------------------------------------------------------------------------------------------
    def client_env(self, **extra: str) -> dict[str, str]:
        """A client process's environment: its own DISTRIBUTARY_HOME (so nothing can reach the server's store
        except through the API) and DISTRIBUTARY_API_URL."""
        env = {**base_env(), "DISTRIBUTARY_HOME": str(self.client_home), "DISTRIBUTARY_API_URL": self.api_url}
        if self.auth_string:
            env["DISTRIBUTARY_API_AUTH_STRING"] = self.auth_string
        env.update(extra)
        return env

    def run_flow(self, code: str, *, timeout: float = 180.0, check: bool = True,
                 env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """Run `code` (a Python script, dedented) as a client of this server; its stdout/stderr as text."""
        script = self.workdir / f"flow_{time.monotonic_ns()}.py"
        script.write_text(textwrap.dedent(code))
        proc = subprocess.run([sys.executable, str(script)], env=env or self.client_env(), cwd=self.workdir,
                              capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"flow script exited {proc.returncode}\nstdout:\n{proc.stdout[-3000:]}\n"
                                 f"stderr:\n{proc.stderr[-3000:]}")
        return proc

    def cli(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        """`distributary ARGS` as a client of this server."""
        return subprocess.run([sys.executable, "-m", "distributary", *args], env=self.client_env(),
                              cwd=self.workdir, capture_output=True, text=True, timeout=timeout)

    def http(self, **kwargs: Any) -> httpx.Client:
        """An httpx client of the API (`base_url` is `.api_url`; the auth string when the server needs it)."""
        if self.auth_string and "auth" not in kwargs:
            kwargs["auth"] = tuple(self.auth_string.split(":", 1))
        kwargs.setdefault("timeout", 30)
        return httpx.Client(base_url=self.api_url + "/", **kwargs)


