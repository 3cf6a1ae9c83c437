"""`distributary work-queue create / ls / inspect / pause / resume / set-concurrency-limit /
clear-concurrency-limit / delete`: the queues of a work pool (Prefect's `prefect work-queue`), on the embedded run
store or over the API (DISTRIBUTARY_API_URL), like `work-pool`."""
from __future__ import annotations

from typing import Any

import typer

from ._output import OutputOpt, check_output, details, emit_json, table

app = typer.Typer(help="Work queues: a work pool's queues (priority, pause, concurrency limit).",
                  no_args_is_help=True)
PoolOpt = typer.Option(..., "--pool", "-p", help="the work pool the queue is in")


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="work-queue")


def _storage() -> Any:
    from ..deployments.definition import deployment_storage as get_storage

    return get_storage()


def _queue(name: str, pool: str) -> tuple[Any, Any]:
    st = _storage()
    return st, st.read_work_queue_by_name(pool, name)  # not there: an error naming the command that creates it


@app.command("create")
def queue_create(name: str, pool: str = PoolOpt,
                 limit: int | None = typer.Option(None, "--limit", "-l", help="at most this many of its runs at once"),
                 priority: int | None = typer.Option(None, "--priority", "-q",
                                                     help="1 is claimed first (default: after the pool's queues)"),
                 description: str | None = typer.Option(None, "--description", "-d")) -> None:
    """Create a queue in a work pool."""
    if limit is not None and limit < 0:
        raise typer.BadParameter("the limit must be 0 or more")
    q = _storage().create_work_queue(pool, name, description=description, priority=priority,
                                     concurrency_limit=limit)
    typer.echo(f"Created work queue {q.name!r} in work pool {pool!r} (priority {q.priority}, id {q.id})")


@app.command("ls")
def queue_ls(pool: str | None = typer.Option(None, "--pool", "-p", help="only this pool's queues"),
             output: str = OutputOpt) -> None:
    """List work queues, by pool and priority (the order workers claim in)."""
    queues = _storage().read_work_queues(pool)
    if check_output(output) == "json":
        return emit_json([q.model_dump(mode="json") | {"status": q.status} for q in queues])
    table("Work queues", ["Name", "Pool", "Priority", "Concurrency limit", "Status", "ID"],
          [(q.name, q.work_pool_name, q.priority, q.concurrency_limit, q.status, q.id) for q in queues])


@app.command("inspect")
def queue_inspect(name: str, pool: str = PoolOpt, output: str = OutputOpt) -> None:
    """Show a work queue."""
    _, q = _queue(name, pool)
    data = q.model_dump(mode="json") | {"status": q.status}
    if check_output(output) == "json":
        return emit_json(data)
    details(f"Work queue {pool}/{name}", data)


def _update(name: str, pool: str, done: str, after: str = "", **values: Any) -> None:
    st, q = _queue(name, pool)
    st.update_work_queue(q.id, **values)
    typer.echo(f"{done} work queue {name!r} in work pool {pool!r}{after}")


@app.command("pause")
def queue_pause(name: str, pool: str = PoolOpt) -> None:
    """Pause a queue: workers claim none of its runs until it is resumed."""
    _update(name, pool, "Paused", paused=True)


@app.command("resume")
def queue_resume(name: str, pool: str = PoolOpt) -> None:
    _update(name, pool, "Resumed", paused=False)


@app.command("set-concurrency-limit")
def queue_set_limit(name: str, limit: int, pool: str = PoolOpt) -> None:
    """At most LIMIT runs of the queue at once (over all workers; 0 holds them all)."""
    if limit < 0:
        raise typer.BadParameter("the limit must be 0 or more")
    _update(name, pool, "Set the concurrency limit of", f" to {limit}", concurrency_limit=limit)


@app.command("clear-concurrency-limit")
def queue_clear_limit(name: str, pool: str = PoolOpt) -> None:
    _update(name, pool, "Cleared the concurrency limit of", concurrency_limit=None)


@app.command("delete")
def queue_delete(name: str, pool: str = PoolOpt) -> None:
    """Delete a queue; its runs that have not started move to the pool's default queue."""
    st, q = _queue(name, pool)
    st.delete_work_queue(q.id)
    typer.echo(f"Deleted work queue {name!r} from work pool {pool!r}")
