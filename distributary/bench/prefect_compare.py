"""`--with-prefect`: the same scenarios on Prefect 3, for the same table and plot.

Prefect is never a dependency of distributary. On first use it is installed, with prefect-dask and prefect-ray,
into its own virtual environment (`~/.cache/distributary/prefect-venv`, or `$DISTRIBUTARY_PREFECT_VENV`) with
`python -m venv` + pip, pinning dask/distributed and ray to the versions installed here. A generated script
runs there and prints its measurements as JSON.

Prefect's workers must import Prefect, so Prefect cannot use the sweep's own Dask and Ray clusters (their
workers run distributary's interpreter). The script starts a cluster of the same shape in its own environment
(a LocalCluster with as many single-threaded worker processes; `ray.init` with as many CPUs) once, and points
Prefect's runner at it by address, as the sweep does for distributary. Its start-up is reported separately.
Prefect runs with its ephemeral API server (a temporary PREFECT_HOME), started before any timed run.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from ..errors import DistributaryError
from .backends import RAY_ENV, Backend
from .measure import Measurement, Progress
from .scenarios import Context, Scenario

SUPPORTED = ("fanout", "fanout_1mb", "chain", "map_reduce", "cache_local")
INSTALL_TIMEOUT = 1800


class PrefectUnavailable(DistributaryError, RuntimeError):
    """Prefect could not be installed or run for the comparison; the message says why and what to do."""


def venv_dir() -> Path:
    return Path(os.environ.get("DISTRIBUTARY_PREFECT_VENV") or "~/.cache/distributary/prefect-venv").expanduser()


def _pin(package: str) -> str:
    try:
        return f"{package}=={version(package)}"
    except PackageNotFoundError:
        return package


def requirements(kind: str) -> list[str]:
    """What the comparison needs in Prefect's environment for one runner kind."""
    # FastAPI 0.155 dropped Body(**extra); Prefect 3.8's API server still passes min_items= (TypeError at start).
    reqs = ["prefect>=3,<4", "fastapi<0.155", "cloudpickle"]
    if kind == "dask":
        reqs += ["prefect-dask", _pin("dask"), _pin("distributed")]
    if kind == "ray":
        reqs += ["prefect-ray", _pin("ray")]
    return reqs


def ensure_venv(kind: str, progress: Progress | None = None) -> Path:
    """The venv's python, creating the venv and installing what `kind` needs if missing."""
    root = venv_dir()
    python = root / "bin" / "python"
    stamp = root / "distributary-installed.json"
    installed: list[str] = json.loads(stamp.read_text()) if stamp.exists() else []
    missing = [r for r in requirements(kind) if r not in installed]
    if not missing:
        return python
    if progress is not None:
        progress.message(f"Prefect comparison: installing {' '.join(missing)} into {root} (first use only)")
    try:
        if not python.exists():
            subprocess.run([sys.executable, "-m", "venv", str(root)], check=True, capture_output=True, text=True,
                           timeout=300)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *missing],
                       check=True, capture_output=True, text=True, timeout=INSTALL_TIMEOUT)
    except subprocess.CalledProcessError as exc:
        raise PrefectUnavailable(
            f"Installing {' '.join(missing)} into {root} failed (exit {exc.returncode}): "
            f"{(exc.stderr or exc.stdout or '').strip()[-1500:]}\nThe comparison needs pip access to PyPI. Fix the "
            f"cause, or delete {root} and retry; run without --with-prefect to skip it.") from None
    except subprocess.TimeoutExpired:
        raise PrefectUnavailable(f"Installing Prefect into {root} took over {INSTALL_TIMEOUT} s; check the network "
                                 f"access to PyPI, or run without --with-prefect.") from None
    stamp.write_text(json.dumps(sorted(set(installed) | set(missing))))
    return python


def run_prefect(backend: Backend, scenarios: list[Scenario], ctx: Context, sizes: list[int], repeat: int, *,
                caps: bool = True, max_n: int = 10**3, max_seconds: float | None = 300.0,
                progress: Progress | None = None, timeout: float = 3600) -> list[Measurement]:
    """Prefect's measurements of the supported scenarios for this backend's runner kind (impl "prefect").
    A failure is recorded on the measurements (and shown in the report), never raised."""
    spec = backend.spec
    chosen = [s for s in scenarios if s.name in SUPPORTED]
    plan = {s.name: [n for n in s.sizes(ctx, spec.kind, sizes, caps) if n <= max_n] for s in chosen}
    points = [(name, n) for name, ns in plan.items() for n in ns]
    if not points:
        return []

    def failed(message: str) -> list[Measurement]:
        return [Measurement(name, spec.label, spec.kind, "prefect", n, error=message) for name, n in points]

    if spec.address is not None:
        return failed("Prefect runs on a cluster it starts itself (its workers need Prefect); a runner given by "
                      "address is not compared")
    if progress is not None:
        progress.update(f"prefect {spec.label}: preparing")
    try:
        python = ensure_venv(spec.kind, progress)
    except PrefectUnavailable as exc:
        if progress is not None:
            progress.message(str(exc))
        return failed(str(exc))
    config = {"kind": spec.kind, "workers": backend.parallelism, "plan": plan, "repeat": repeat,
              "max_workers": getattr(backend, "max_workers", None), "max_seconds": max_seconds}
    with tempfile.TemporaryDirectory(prefix="distributary-prefect-") as tmp:
        script = Path(tmp) / "prefect_bench.py"
        script.write_text(SCRIPT.replace("@PKG@", COMPARATOR_PACKAGE))
        env = {**os.environ, **RAY_ENV, "PREFECT_HOME": str(Path(tmp) / "home"), "PREFECT_LOGGING_LEVEL": "WARNING",
               "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_RESULTS_PERSIST_BY_DEFAULT": "false",
               "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "300",
               "BENCH_WORKDIR": tmp}
        env.pop("PYTHONPATH", None)
        if progress is not None:
            progress.update(f"prefect {spec.label}: running {len(points)} points")
        returncode, stdout, stderr = _run_script(python, script, config, env, tmp, timeout)
    if returncode is None:
        return failed(f"the Prefect script took over {timeout:.0f} s")
    lines = [ln for ln in stdout.splitlines() if ln.startswith("{")]
    if returncode != 0 or not lines:
        return failed(f"the Prefect script failed (exit {returncode}): {stderr.strip()[-800:]}")
    data = json.loads(lines[-1])
    out = []
    for row in data["measurements"]:
        out.append(Measurement(row["scenario"], spec.label, spec.kind, "prefect", row["n"], walls=row["walls"],
                               startup_s=data.get("startup_s"), parallelism=backend.parallelism,
                               error=row.get("error"), note=f"prefect {data.get('prefect_version')}"))
    return out


def _run_script(python: Path, script: Path, config: dict[str, Any], env: dict[str, str], cwd: str,
                timeout: float) -> tuple[int | None, str, str]:
    """Run the script in its own session with output to files (Prefect's ephemeral API server is a child that
    inherits pipes and may outlive the script), then stop whatever of that session is left, by process group."""
    out_path, err_path = Path(cwd) / "stdout.txt", Path(cwd) / "stderr.txt"
    with open(out_path, "w") as out, open(err_path, "w") as err:
        proc = subprocess.Popen([str(python), str(script)], stdin=subprocess.PIPE, stdout=out, stderr=err,
                                text=True, env=env, cwd=cwd, start_new_session=True)
        try:
            proc.communicate(json.dumps(config), timeout=timeout)
            returncode: int | None = proc.returncode
        except subprocess.TimeoutExpired:
            returncode = None
        finally:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            proc.wait()
    return returncode, out_path.read_text(), err_path.read_text()


# The comparator's package, imported only by the generated script in its own virtualenv, never by distributary.
COMPARATOR_PACKAGE = "prefect"

# The script run by Prefect's interpreter: reads the plan on stdin, prints one JSON line. Same work as
# scenarios.py; tasks and flows mirror the distributary ones.
SCRIPT = r'''
import gc, json, os, sys, time

import @PKG@
from @PKG@ import flow, task
from @PKG@.cache_policies import INPUTS
from @PKG@.futures import wait

MIB = 2 ** 20


@task
def inc(x):
    return x + 1


@task
def megabyte(x):
    return bytes(MIB)


@task
def add_all(values):
    return sum(values)


def fanout(n):
    return len(inc.map(range(n)).result())


def fanout_1mb(n):
    futures = megabyte.map(range(n))
    wait(futures)
    return sum(len(b) for b in futures.result())


def chain(n):
    f = inc.submit(0)
    for _ in range(n - 1):
        f = inc.submit(f)
    return f.result()


def map_reduce(n):
    return add_all.submit(inc.map(range(n))).result()


def cache_local(n):
    from @PKG@.filesystems import LocalFileSystem
    store = LocalFileSystem(basepath=os.path.join(os.environ["BENCH_WORKDIR"], f"cache-{n}"))
    store.save(f"bench-cache-{n}", overwrite=True)  # Prefect wants result storage saved server-side
    cached = inc.with_options(cache_policy=INPUTS, result_storage=store, persist_result=True)
    return len(cached.map(range(n)).result())


BODIES = {"fanout": fanout, "fanout_1mb": fanout_1mb, "chain": chain, "map_reduce": map_reduce,
          "cache_local": cache_local}


def start(config):
    # A cluster of the same shape as distributary's, started once; Prefect's runner joins it by address.
    kind, workers = config["kind"], config["workers"]
    if kind == "threads":
        from @PKG@.task_runners import ThreadPoolTaskRunner
        return (lambda: ThreadPoolTaskRunner(max_workers=config["max_workers"])), None
    if kind == "processes":
        import @PKG@.task_runners as tr
        if not hasattr(tr, "ProcessPoolTaskRunner"):
            raise SystemExit(f"Prefect {prefect.__version__} has no ProcessPoolTaskRunner")
        return (lambda: tr.ProcessPoolTaskRunner(max_workers=config["max_workers"])), None
    if kind == "dask":
        from distributed import LocalCluster
        from prefect_dask import DaskTaskRunner
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                               dashboard_address="127.0.0.1:0", worker_dashboard_address="127.0.0.1:0")
        return (lambda: DaskTaskRunner(address=cluster.scheduler_address)), cluster.close
    import ray
    from prefect_ray import RayTaskRunner
    ray.init(num_cpus=workers, object_store_memory=512 * MIB, include_dashboard=False, log_to_driver=False)
    address = ray.get_runtime_context().gcs_address
    return (lambda: RayTaskRunner(address=address, init_kwargs={"ignore_reinit_error": True})), ray.shutdown


def main():
    config = json.load(sys.stdin)
    t0 = time.perf_counter()
    make_runner, cleanup = start(config)
    startup = time.perf_counter() - t0
    results = []
    try:
        for name, sizes in config["plan"].items():
            f = flow(BODIES[name], name=f"bench-{name}", task_runner=make_runner(), validate_parameters=False)
            try:
                f(min(sizes))  # warm-up: API server, workers, imports
            except Exception as exc:
                for n in sizes:
                    results.append({"scenario": name, "n": n, "walls": [],
                                    "error": f"{type(exc).__name__}: {exc}"[:500]})
                continue
            last = None
            for n in sizes:
                row = {"scenario": name, "n": n, "walls": []}
                budget = config.get("max_seconds")
                if last is not None and budget and last[1] * n / last[0] > budget:
                    row["error"] = (f"skipped: would take about {last[1] * n / last[0]:.0f} s at N={n} (from "
                                    f"{last[1]:.1f} s at N={last[0]}), over --max-seconds {budget:g}")
                    results.append(row)
                    continue
                try:
                    if name == "cache_local":
                        f(n)  # fill the cache, as the distributary scenario does
                    for _ in range(config["repeat"]):
                        gc.collect()
                        t = time.perf_counter()
                        f(n)
                        row["walls"].append(time.perf_counter() - t)
                except Exception as exc:
                    row["error"] = f"{type(exc).__name__}: {exc}"[:500]
                if row["walls"]:
                    last = (n, sorted(row["walls"])[len(row["walls"]) // 2])
                results.append(row)
                print(f"{name} N={n}: {row['walls']}", file=sys.stderr, flush=True)
    finally:
        if cleanup is not None:
            cleanup()
    print(json.dumps({"prefect_version": prefect.__version__, "startup_s": startup, "measurements": results}))


if __name__ == "__main__":  # worker processes (spawn) import this file: run nothing then
    main()
'''

__all__ = ["run_prefect", "ensure_venv", "venv_dir", "requirements", "PrefectUnavailable", "SUPPORTED"]
