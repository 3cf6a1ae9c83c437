"""One flow, any runner: the same results and states on threads, processes, Dask and Ray, and results that
cross runners, processes and DISTRIBUTARY_HOMEs through a shared S3 store (moto on loopback)."""
from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import fsspec
from cross_tasks import slow_square, worker_pid

from distributary import flow
from distributary.results import resolve_store

HERE = Path(__file__).resolve().parent


def test_same_flow_same_results_and_states_on_every_runner(runner, tmp_path):
    marker = str(tmp_path / "calls")
    plain = slow_square.with_options(cache_policy=None)

    @flow(task_runner=runner)
    def f():
        futs = plain.map(range(6), marker)
        futs.wait()
        return futs.result(), sorted({fu.state.name for fu in futs}), worker_pid.submit().result()

    values, names, pid = f()
    assert values == [i * i for i in range(6)] and names == ["Completed"]
    assert (pid == os.getpid()) == (type(runner).__name__ == "ThreadPoolTaskRunner")


RAY_SIDE = textwrap.dedent("""
    import json, pickle, sys
    sys.path.insert(0, sys.argv[1])
    from cross_tasks import slow_square, add_one
    from distributary import flow
    from distributary.results import resolve_store
    from distributary.runners.ray import RayTaskRunner

    args = json.loads(sys.argv[2])
    ref = pickle.loads(bytes.fromhex(args["ref"]))
    store = resolve_store(args["url"], args["options"])
    runner = RayTaskRunner(address=args["ray"], init_kwargs={"runtime_env": {"env_vars": args["env"]}})
    out = []

    @flow(task_runner=runner)
    def f():
        cached = slow_square.with_options(result_storage=store).submit(12, args["marker"])
        resolved = add_one.submit(ref)
        cached.wait()
        out.append((cached.state.name, cached.result(), resolved.result()))

    f()
    print(json.dumps(out[0]))
""")


def test_s3_result_from_dask_is_a_cache_hit_and_a_reference_for_ray_in_another_process(
        dask_runner, ray_instance, moto_s3, tmp_path):
    bucket = f"x-{uuid.uuid4().hex[:12]}"
    fsspec.filesystem("s3", skip_instance_cache=True, **moto_s3.storage_options).mkdir(bucket)
    url = f"s3://{bucket}/results"
    store = resolve_store(url, moto_s3.storage_options)
    marker = str(tmp_path / "computed")
    out = []

    @flow(task_runner=dask_runner)
    def on_dask():
        fut = slow_square.with_options(result_storage=store).submit(12, marker)
        fut.wait()
        out.append((fut.state.name, fut.state.result_ref, fut.result()))

    on_dask()
    name, ref, value = out[0]
    assert (name, value) == ("Completed", 144) and ref is not None and ref.url.startswith(url)
    assert len(Path(marker).read_text().splitlines()) == 1

    env = {**os.environ, **moto_s3.env, "DISTRIBUTARY_HOME": str(tmp_path / "other-home")}
    args = {"ref": pickle.dumps(ref).hex(), "url": url, "options": moto_s3.storage_options, "ray": ray_instance,
            "marker": marker, "env": moto_s3.env}
    proc = subprocess.run([sys.executable, "-c", RAY_SIDE, str(HERE), json.dumps(args)], env=env,
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-4000:]
    state_name, cached_value, resolved = json.loads(proc.stdout.strip().splitlines()[-1])
    assert (state_name, cached_value) == ("Cached", 144)  # computed on Dask, read by Ray
    assert resolved == 145  # the Dask flow's result reference, resolved on a Ray worker
    assert len(Path(marker).read_text().splitlines()) == 1  # never computed again
