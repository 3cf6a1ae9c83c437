"""`distributary work-pool create / ls / inspect / pause / resume / set-concurrency-limit / delete` and
`distributary worker start --pool NAME [--work-queue QUEUE ...]`."""
from __future__ import annotations

from typing import Any

import typer

from ._output import OutputOpt, check_output, details, emit_json, table

pool_app = typer.Typer(help="Work pools: where deployments' runs wait for workers.", no_args_is_help=True)
worker_app = typer.Typer(help="Workers: poll a work pool and run its flow runs.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(pool_app, name="work-pool")
    app.add_typer(worker_app, name="worker")


def _storage() -> Any:
    from ..deployments.definition import deployment_storage as get_storage

    return get_storage()


@pool_app.command("create")
def pool_create(name: str, type: str = typer.Option("process", "--type", "-t",
                                                     help="process | dask | ray | docker | kubernetes"),
                concurrency_limit: int | None = typer.Option(None, "--concurrency-limit"),
                paused: bool = typer.Option(False, "--paused")) -> None:
    """Create a work pool."""
    pool = _storage().create_work_pool(name, type=type, concurrency_limit=concurrency_limit, paused=paused)
    typer.echo(f"Created work pool {pool.name!r} of type {pool.type}")


@pool_app.command("ls")
def pool_ls(output: str = OutputOpt) -> None:
    """List work pools."""
    pools = _storage().read_work_pools()
    if check_output(output) == "json":
        return emit_json(pools)
    table("Work pools", ["Name", "Type", "Paused", "Concurrency limit", "ID"],
          [(p.name, p.type, p.is_paused, p.concurrency_limit, p.id) for p in pools])


@pool_app.command("inspect")
def pool_inspect(name: str, output: str = OutputOpt) -> None:
    """Show a work pool with its base job template and workers."""
    st = _storage()
    data = st.read_work_pool(name).model_dump(mode="json")
    data["workers"] = [w.model_dump(mode="json") for w in st.read_workers(name)]
    if check_output(output) == "json":
        return emit_json(data)
    details(f"Work pool {name}", data)


@pool_app.command("pause")
def pool_pause(name: str) -> None:
    """Pause a work pool: workers claim none of its runs until it is resumed."""
    _storage().update_work_pool(name, paused=True)
    typer.echo(f"Paused work pool {name!r}")


@pool_app.command("resume")
def pool_resume(name: str) -> None:
    _storage().update_work_pool(name, paused=False)
    typer.echo(f"Resumed work pool {name!r}")


@pool_app.command("set-concurrency-limit")
def pool_set_limit(name: str, limit: int) -> None:
    """At most LIMIT runs of the pool at once (over all its workers)."""
    if limit < 1:
        raise typer.BadParameter("the limit must be at least 1")
    _storage().update_work_pool(name, concurrency_limit=limit)
    typer.echo(f"Set the concurrency limit of work pool {name!r} to {limit}")


@pool_app.command("delete")
def pool_delete(name: str) -> None:
    _storage().delete_work_pool(name)
    typer.echo(f"Deleted work pool {name!r}")


@pool_app.command("preview")
def pool_preview(name: str, deployment: str | None = typer.Option(None, "--deployment", "-d",
                                                                  help="FLOW/DEPLOYMENT: use its job variables"),
                 job_variables: str | None = typer.Option(None, "--job-variables", "-jv",
                                                          help="a JSON object of job variables (over the deployment's)")
                 ) -> None:
    """Print the validated manifest a run of a docker or kubernetes pool is submitted as (a Docker
    container-create body, or a Kubernetes batch/v1 Job), as JSON; needs neither Docker nor a cluster."""
    import json

    from ..runstore.work_pools import render_job
    from ..workers.containers import manifest

    st = _storage()
    pool = st.read_work_pool(name)
    variables = dict(st.read_deployment_by_name(deployment).job_variables or {}) if deployment else {}
    if job_variables:
        try:
            variables.update(json.loads(job_variables))
        except (ValueError, TypeError) as exc:
            raise typer.BadParameter(f"--job-variables must be a JSON object: {exc}") from exc
    typer.echo(json.dumps(manifest(pool.type, render_job(pool.base_job_template, variables), "FLOW_RUN_ID"),
                          indent=2))


@worker_app.command("start")
def worker_start(pool: str = typer.Option(..., "--pool", "-p", help="the work pool to poll"),
                 name: str | None = typer.Option(None, "--name", "-n", help="the worker's name"),
                 work_queue: list[str] | None = typer.Option(None, "--work-queue", "-q",
                                                             help="claim only this queue's runs (repeat for more "
                                                                  "queues; default: every queue of the pool)"),
                 limit: int | None = typer.Option(None, "--limit", "-l", help="at most this many runs at once"),
                 type: str | None = typer.Option(None, "--type", "-t",
                                                 help="process, dask or ray (default: the pool's type; docker and "
                                                      "kubernetes pools get their own worker)"),
                 address: str | None = typer.Option(None, "--address",
                                                    help="the Dask scheduler or Ray cluster address (dask/ray)"),
                 run_once: bool = typer.Option(False, "--run-once", help="one poll, then stop")) -> None:
    """Start a worker: it claims the pool's due runs and runs each (process: in a subprocess; dask/ray: on the
    cluster at --address; docker/kubernetes: as a container through `docker run` / a Job through `kubectl apply`)
    until SIGTERM or Ctrl-C."""
    st = _storage()
    kind = type or st.read_work_pool(pool).type
    queues = list(work_queue) if work_queue else None
    if kind == "process":
        from ..workers.process import ProcessWorker

        ProcessWorker(pool, name=name, limit=limit, work_queues=queues).start(run_once=run_once)
    elif kind in ("dask", "ray"):
        from ..workers.cluster import ClusterWorker

        ClusterWorker(pool, kind, address=address, name=name, limit=limit, work_queues=queues).start(
            run_once=run_once)
    elif kind in ("docker", "kubernetes"):
        from ..workers.container_worker import ContainerWorker
        from ..workers.containers import InfrastructureUnavailable

        try:
            worker = ContainerWorker(pool, name=name, limit=limit, work_queues=queues)
        except InfrastructureUnavailable as exc:
            raise typer.BadParameter(str(exc)) from None
        worker.start(run_once=run_once)
    else:
        raise typer.BadParameter(f"unknown worker type {kind!r}: use process, dask, ray, docker or kubernetes")
