"""`distributary bench`: the smoke run of the real sweep (table, JSON, Markdown, PNG), the user-flow form, clear
errors, runner-spec parsing, and the fit and advice on synthetic measurements with known costs."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from distributary.bench import Advice, advise, fit_linear, parse_runners
from distributary.bench.measure import Measurement
from distributary.errors import ConfigurationError

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
BUILTIN = ["fanout", "fanout_1mb", "chain", "map_reduce", "cache_local", "cache_s3", "arrow_local", "arrow_s3"]


def bench(*args: str, timeout: float = 280) -> subprocess.CompletedProcess:
    env = {**os.environ, "DISTRIBUTARY_LOGGING_LEVEL": "WARNING"}
    return subprocess.run([sys.executable, "-m", "distributary.cli", "bench", *args], capture_output=True,
                          text=True, timeout=timeout, env=env)


def assert_outputs(out_dir: Path, proc: subprocess.CompletedProcess, targets: bool = True) -> dict:
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "wall s (min-max)" in proc.stdout and "overhead us/task" in proc.stdout  # the table
    assert "Advice:" in proc.stdout and ("Targets:" in proc.stdout) == targets
    data = json.loads((out_dir / "results.json").read_text())
    assert data["machine"]["python"] and data["machine"]["packages"]["distributary"]
    report = (out_dir / "report.md").read_text()
    assert ("## Targets" in report) == targets and "## Results" in report and "## Advice" in report
    assert "![" in report
    assert (out_dir / "plot.png").read_bytes()[:8] == PNG_MAGIC
    assert "[" in proc.stderr and "done" in proc.stderr  # the progress bar
    return data


@pytest.fixture(scope="module")
def dask_address():
    """A scheduler + 2 worker processes the bench joins by address (and must not stop)."""
    distributed = pytest.importorskip("distributed", reason="dask is an extra of the bench suite")
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                       dashboard_address="127.0.0.1:0", worker_dashboard_address="127.0.0.1:0")
    yield cluster.scheduler_address
    cluster.close()


# ---------------------------------------------------------------------------------------------------------------
# The smoke run: the real code path, every built-in scenario
# ---------------------------------------------------------------------------------------------------------------
def test_smoke_runs_every_scenario_and_writes_table_json_markdown_png(tmp_path, dask_address):
    runners = f"threads,processes,dask(address={dask_address})"
    proc = bench("--smoke", "--runners", runners, "--out", str(tmp_path))
    data = assert_outputs(tmp_path, proc)
    ms = data["measurements"]
    for runner in ("threads", "processes", f"dask(address={dask_address})"):
        for scenario in BUILTIN:
            for impl in ("distributary", "raw"):
                got = [m for m in ms if (m["runner"], m["scenario"], m["impl"]) == (runner, scenario, impl)]
                assert got, (runner, scenario, impl)
                for m in got:
                    assert m["error"] is None, m
                    assert len(m["walls"]) == 2 and m["wall_median_s"] > 0 and m["peak_bytes"] > 0
    # The hand-batched baselines (one Dask task per chunk, dask.bag) sit beside the per-item one, on Dask only.
    for impl in ("raw_batched", "raw_bag"):
        got = [m for m in ms if m["scenario"] == "fanout" and m["impl"] == impl]
        assert {m["kind"] for m in got} == {"dask"}, (impl, got)
        assert all(m["error"] is None and m["wall_median_s"] > 0 for m in got), got
    report = (tmp_path / "report.md").read_text()
    assert "hand-batched s (x)" in report and "hand-batched raw" in report
    dask_rows = [m for m in ms if m["kind"] == "dask"]
    assert all(m["startup_s"] is not None for m in dask_rows)  # connecting is timed apart from the runs
    assert {t["status"] for t in data["targets"]} <= {"MET", "MISSED", "NOT MEASURED"}
    assert data["advice"]["runner"] in ("threads", "processes", "dask")
    # The bench joined the cluster by address: it is still up.
    from distributed import Client

    with Client(dask_address, timeout=10) as client:
        assert client.submit(sum, [1, 2]).result() == 3


@pytest.mark.slow
def test_smoke_starts_its_own_dask_and_ray_clusters(tmp_path):
    pytest.importorskip("ray", reason="ray is an extra of the bench suite")
    proc = bench("--smoke", "--runners", "dask(n_workers=1),ray(num_cpus=1)", "--scenarios",
                 "fanout,chain,map_reduce,cache_local", "--out", str(tmp_path))
    data = assert_outputs(tmp_path, proc)
    started = {b["runner"]: b for b in data["backends"]}
    assert started["dask(n_workers=1)"]["startup_s"] > 0 and started["ray(num_cpus=1)"]["startup_s"] > 0
    assert all(m["error"] is None for m in data["measurements"]), [m["error"] for m in data["measurements"]]
    assert "Cluster start-up" in proc.stdout


def test_from_json_rebuilds_the_report(tmp_path):
    first = tmp_path / "first"
    proc = bench("--smoke", "--runners", "threads", "--scenarios", "fanout", "--sizes", "5,20",
                 "--no-memory", "--out", str(first))
    assert proc.returncode == 0, proc.stderr
    again = tmp_path / "again"
    proc = bench("--from-json", str(first / "results.json"), "--advise-n", "1000", "--out", str(again))
    assert proc.returncode == 0, proc.stderr
    data = json.loads((again / "results.json").read_text())
    assert data["measurements"] == json.loads((first / "results.json").read_text())["measurements"]
    assert data["advice"]["n"] == 1000 and (again / "plot.png").read_bytes()[:8] == PNG_MAGIC

    # A sweep split in parts (here a second scenario run separately) is reported as one.
    second = tmp_path / "second"
    proc = bench("--smoke", "--runners", "threads", "--scenarios", "chain", "--sizes", "5", "--no-memory",
                 "--out", str(second))
    assert proc.returncode == 0, proc.stderr
    merged = tmp_path / "merged"
    proc = bench("--from-json", str(first / "results.json"), str(second / "results.json"), "--out", str(merged))
    assert proc.returncode == 0, proc.stderr
    data = json.loads((merged / "results.json").read_text())
    points = {(m["scenario"], m["impl"], m["n"]) for m in data["measurements"]}
    assert points == {(s, i, n) for s, n in [("fanout", 5), ("fanout", 20), ("chain", 5)]
                      for i in ("raw", "distributary")}
    report = (merged / "report.md").read_text()
    assert report.count("- Command: `distributary bench") == 2  # both commands that produced the figures

    (tmp_path / "broken.json").write_text('{"schema": "distributary-bench/1", "measurem')
    proc = bench("--from-json", str(tmp_path / "broken.json"), "--out", str(tmp_path / "x"))
    assert proc.returncode == 2 and "is not valid JSON" in proc.stderr


@pytest.mark.parametrize("after,signum", [(0.0, signal.SIGTERM), (5.0, signal.SIGTERM), (5.0, signal.SIGINT)],
                         ids=["kill-while-starting", "kill-mid-sweep", "ctrl-c-mid-sweep"])
def test_a_killed_sweep_stops_the_servers_it_started(tmp_path, after, signum):
    """`kill` (SIGTERM) or Ctrl-C (SIGINT) on a sweep unwinds it: the S3 server it started on loopback does not
    outlive it, whether the signal comes while that server starts or while the timed runs use it."""
    psutil = pytest.importorskip("psutil", reason="psutil is an extra of the bench suite")
    env = {**os.environ, "DISTRIBUTARY_LOGGING_LEVEL": "WARNING"}
    proc = subprocess.Popen([sys.executable, "-m", "distributary.cli", "bench", "--smoke", "--runners", "threads",
                             "--scenarios", "cache_s3", "--sizes", "20", "--repeat", "500", "--no-memory",
                             "--out", str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        deadline = time.monotonic() + 90
        servers: list = []
        while not servers and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
            servers = [c for c in psutil.Process(proc.pid).children(recursive=True)
                       if "moto.server" in " ".join(c.cmdline())]
        assert servers, "the sweep never started its S3 server"
        time.sleep(after)
        assert proc.poll() is None, "the sweep ended before it was killed; give it more repeats"
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130 and b"interrupted" in err
    gone, alive = psutil.wait_procs(servers, timeout=15)
    for p in alive:  # do not leak it from the test either
        p.kill()
    assert not alive, f"S3 server(s) left running: {[p.pid for p in alive]}"


# ---------------------------------------------------------------------------------------------------------------
# The user's flow
# ---------------------------------------------------------------------------------------------------------------
FLOW_FILE = '''
from distributary import flow, task

@task
def square(x: int) -> int:
    return x * x

@flow
def pipeline(items: int, offset: int = 0) -> int:
    return sum(square.map([i + offset for i in range(items)]).result())

def not_a_flow():
    pass
'''


def test_user_flow_is_swept_on_each_runner_with_its_size_parameter(tmp_path):
    path = tmp_path / "my_flows.py"
    path.write_text(FLOW_FILE)
    out = tmp_path / "out"
    proc = bench(f"{path}:pipeline", "--size-param", "items", "--param", "offset=3", "--param", "items=5000",
                 "--sizes", "5,20,60", "--runners", "threads,processes", "--repeat", "2", "--out", str(out))
    data = assert_outputs(out, proc, targets=False)  # the targets are about the built-in suite
    ms = data["measurements"]
    assert {m["scenario"] for m in ms} == {"my_flows.py:pipeline"}
    assert {(m["runner"], m["n"]) for m in ms} == {(r, n) for r in ("threads", "processes") for n in (5, 20, 60)}
    assert all(m["error"] is None and m["impl"] == "distributary" for m in ms), ms
    assert data["config"]["params"] == {"offset": 3} and data["config"]["size_param"] == "items"
    assert data["advice"]["n"] == 5000  # the size given with --param is the size the advice is for
    assert data["advice"]["scenario"] == "my_flows.py:pipeline"
    assert advise(out / "results.json", n=10).runner in ("threads", "processes")


@pytest.mark.parametrize("args, message", [
    (["--runners", "threads,fibers"], "Unknown runner 'fibers'"),
    (["--runners", "dask(address=tcp://127.0.0.1:1"], "missing its closing ')'"),
    (["--runners", "threads(workers=2)"], "has no option(s) workers"),
    (["--sizes", "1e2,lots"], "'lots' is not a number"),
    (["--scenarios", "fanout,teleport"], "Unknown scenario(s) teleport"),
    (["--param", "x=1"], "apply to a FLOW"),
])
def test_bad_arguments_are_clear_errors(args, message):
    proc = bench("--smoke", *args, timeout=60)
    assert proc.returncode == 2
    assert message in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_flow_errors_are_clear(tmp_path):
    path = tmp_path / "flows.py"
    path.write_text(FLOW_FILE)
    cases = [
        ([str(path)], "Give the flow as FILE.py:FLOW_NAME"),
        ([f"{path}:missing"], "has no flow named 'missing'; flows defined there: pipeline"),
        ([f"{path}:not_a_flow"], "is a function, not a @flow"),
        ([f"{tmp_path / 'nope.py'}:pipeline"], "does not exist"),
        ([f"{path}:pipeline", "--size-param", "rows"], "has no parameter 'rows' (--size-param)"),
    ]
    for args, message in cases:
        proc = bench(*args, "--runners", "threads", "--sizes", "5", timeout=60)
        assert proc.returncode == 2, (args, proc.stdout)
        assert message in proc.stderr, (args, proc.stderr)
        assert "Traceback" not in proc.stderr


def test_importing_distributary_and_its_cli_does_not_import_matplotlib_or_psutil():
    code = ("import sys, distributary, distributary.bench, distributary.cli; distributary.cli.build_parser(); "
            "print(sorted(m for m in ('matplotlib', 'psutil', 'dask', 'ray') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


# ---------------------------------------------------------------------------------------------------------------
# Runner specs
# ---------------------------------------------------------------------------------------------------------------
def test_runner_specs_text_and_json_forms():
    specs = parse_runners('threads,processes(max_workers=2),dask(address=tcp://127.0.0.1:8786),'
                          'ray(num_cpus=2, object_store_memory=536870912, runtime_env={"env_vars": {"A": "1"}})')
    assert [s.kind for s in specs] == ["threads", "processes", "dask", "ray"]
    assert specs[1].options == {"max_workers": 2}
    assert specs[2].address == "tcp://127.0.0.1:8786" and specs[2].label == "dask(address=tcp://127.0.0.1:8786)"
    assert specs[3].options["runtime_env"] == {"env_vars": {"A": "1"}}
    js = parse_runners('[{"name": "dask", "address": "tcp://h:1"}, "threads", '
                       '{"name": "ray", "options": {"num_cpus": 1}}]')
    assert [(s.kind, s.options) for s in js] == [("dask", {"address": "tcp://h:1"}), ("threads", {}),
                                                 ("ray", {"num_cpus": 1})]
    assert parse_runners('dask(memory_limit="2GiB", name="a,b")')[0].options == {"memory_limit": "2GiB",
                                                                                "name": "a,b"}


@pytest.mark.parametrize("text, message", [
    ("threads,,dask", "empty entry"), ("dask(n_workers=0)", ">= 1"), ("threads,threads", "given twice"),
    ("ray(num_cpus)", "is not key=value"), ('[{"options": {}}]', 'no "name"'), ("[1,", "does not parse"),
    ("dask(a=[1,2)", "unbalanced"),
])
def test_bad_runner_specs(text, message):
    with pytest.raises(ConfigurationError) as info:
        parse_runners(text)
    assert message in str(info.value)


# ---------------------------------------------------------------------------------------------------------------
# The fit and the advice, on synthetic measurements with known costs
# ---------------------------------------------------------------------------------------------------------------
def test_fit_recovers_known_fixed_and_per_task_costs():
    ns = [100, 1000, 10000, 100000]
    fit = fit_linear(ns, [0.25 + 3e-5 * n for n in ns])
    assert fit.a == pytest.approx(0.25, rel=1e-6) and fit.b == pytest.approx(3e-5, rel=1e-6)


def test_fit_is_robust_to_one_disturbed_repeat():
    ns = [n for n in (100, 1000, 10000, 100000) for _ in range(3)]
    walls = [0.05 + 2e-5 * n for n in ns]
    walls[7] *= 4  # another program grabbed the CPU during one run at N=10^4
    fit = fit_linear(ns, walls)
    assert fit.a == pytest.approx(0.05, rel=0.02) and fit.b == pytest.approx(2e-5, rel=0.02)


def test_fit_never_returns_negative_costs():
    assert fit_linear([10, 100, 1000], [0.001, 0.01, 0.1]).a == 0.0  # pure per-task cost
    falling = fit_linear([10, 100, 1000], [0.52, 0.5, 0.45])  # noise that a free fit would read as b < 0
    assert falling.b == 0.0 and 0.45 <= falling.a <= 0.52


def synthetic(costs: dict[str, tuple[str, float, float, int, float]]) -> list[Measurement]:
    out = []
    for runner, (kind, a, b, parallel, startup) in costs.items():
        for n in (100, 1000, 10000):
            out.append(Measurement("fanout", runner, kind, "distributary", n, [a + b * n] * 3, parallelism=parallel,
                                   startup_s=startup))
            out.append(Measurement("fanout", runner, kind, "raw", n, [(a + b * n) / 2] * 3, parallelism=parallel))
    return out


COSTS = {"threads": ("threads", 0.001, 40e-6, 1, 0.0), "processes": ("processes", 0.2, 150e-6, 2, 0.0),
         "dask": ("dask", 0.05, 300e-6, 2, 2.0)}


def test_advice_prefers_threads_for_small_n_and_parallel_runners_for_long_tasks():
    ms = synthetic(COSTS)
    small = advise(ms, n=100)
    assert isinstance(small, Advice) and small.runner == "threads"
    assert small.costs["processes"].per_task_s == pytest.approx(150e-6, rel=1e-6)
    assert small.costs["dask"].startup_s == 2.0 and small.costs["dask"].fixed_s == pytest.approx(0.05, rel=1e-6)
    big = advise(ms, n=100_000, task_seconds=0.01)
    assert big.runner == "processes"
    # processes beat threads above N = 0.199 / (10.04e-3 - 5.15e-3) ~ 41 tasks of 10 ms
    assert big.costs["processes"].pays_off_above_n == pytest.approx(0.199 / (0.01004 - 0.00515), rel=1e-3)
    assert "processes" in big.explanation and "pays off" in big.explanation
    # with trivial tasks the per-task costs decide: threads stay best, and the break-even task duration is given
    trivial = advise(ms, n=100_000)
    assert trivial.runner == "threads"
    expected = (0.199 + 1e5 * (150e-6 - 40e-6)) / (1e5 * 0.5)
    assert trivial.costs["processes"].pays_off_above_task_s == pytest.approx(expected, rel=1e-3)


def test_advice_for_io_bound_work_and_without_startup(tmp_path):
    ms = synthetic(COSTS)
    assert advise(ms, n=100_000, task_seconds=0.01, gil_bound=False).runner == "threads"  # 6 threads, no GIL
    no_start = advise(ms, n=100, task_seconds=0.05, include_startup=False)
    assert no_start.costs["dask"].predicted_s == pytest.approx(0.05 + 100 * (300e-6 + 0.025), rel=1e-6)
    path = tmp_path / "m.json"
    path.write_text(json.dumps({"measurements": [m.to_dict() for m in ms]}))
    assert advise(path, n=100).runner == "threads"


def test_advice_errors_are_clear(tmp_path):
    with pytest.raises(ConfigurationError, match="does not exist"):
        advise(tmp_path / "missing.json", n=10)
    with pytest.raises(ConfigurationError, match="no successful distributary measurements of scenario 'chain'"):
        advise(synthetic(COSTS), n=10, scenario="chain")
    with pytest.raises(ConfigurationError, match="n must be >= 1"):
        advise(synthetic(COSTS), n=0)
