"""`distributary flow ls`, `flow-run ls/inspect/logs/delete`, `task-run ls/inspect`."""
from __future__ import annotations

import logging
import uuid

import typer

from ._output import OutputOpt, check_output, client, details, emit_json, table

flow_app = typer.Typer(help="Flows recorded in the run store.", no_args_is_help=True)
flow_run_app = typer.Typer(help="Flow runs: list, inspect, logs, delete.", no_args_is_help=True)
task_run_app = typer.Typer(help="Task runs: list, inspect.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(flow_app, name="flow")
    app.add_typer(flow_run_app, name="flow-run")
    app.add_typer(task_run_app, name="task-run")


def _uuid(value: str, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a {what} id (a UUID)") from None


@flow_app.command("ls")
def flow_ls(limit: int = typer.Option(15, help="how many flows"), output: str = OutputOpt) -> None:
    """List flows, newest first."""
    flows = client().read_flows(limit=limit)
    if check_output(output) == "json":
        return emit_json(flows)
    table("Flows", ["ID", "Name", "Created"], [(f.id, f.name, f.created) for f in flows])


@flow_run_app.command("ls")
def flow_run_ls(flow_name: list[str] | None = typer.Option(None, "--flow-name", help="only runs of this flow"),
                state: list[str] | None = typer.Option(None, "--state", help="state type (COMPLETED, FAILED, ...)"),
                tag: list[str] | None = typer.Option(None, "--tag", help="runs having every given tag"),
                limit: int = typer.Option(15, help="how many runs"), output: str = OutputOpt) -> None:
    """List flow runs, newest first."""
    from ..schemas import filters as F

    ff = F.FlowFilter(name=F.FlowFilterName(any_=flow_name)) if flow_name else None
    frf = F.FlowRunFilter(
        state=F.FlowRunFilterState(type=F.FlowRunFilterStateType(any_=[s.upper() for s in state])) if state else None,
        tags=F.FlowRunFilterTags(all_=tag) if tag else None)
    cl = client()
    runs = cl.read_flow_runs(flow_filter=ff, flow_run_filter=frf, limit=limit)
    if check_output(output) == "json":
        return emit_json(runs)
    names = {f.id: f.name for f in cl.read_flows()}
    table("Flow runs", ["ID", "Flow", "Name", "State", "Start", "Duration"],
          [(r.id, names.get(r.flow_id, ""), r.name, r.state_name, r.start_time, r.total_run_time) for r in runs])


@flow_run_app.command("inspect")
def flow_run_inspect(flow_run_id: str, output: str = OutputOpt) -> None:
    """Show a flow run with its state history."""
    _inspect("flow run", flow_run_id, output)


@flow_run_app.command("logs")
def flow_run_logs(flow_run_id: str, tail: int | None = typer.Option(None, "--tail", "-n",
                                                                       help="only the last N lines"),
                  output: str = OutputOpt) -> None:
    """Show the logs of a flow run (its task runs' logs included), oldest first."""
    from ..schemas import filters as F
    from ..schemas import sorting as S

    cl = client()
    run = cl.read_flow_run(_uuid(flow_run_id, "flow run"))
    flt = F.LogFilter(flow_run_id=F.LogFilterFlowRunId(any_=[run.id]))
    if tail is not None:
        logs = list(reversed(cl.read_logs(flt, limit=tail, sort=S.LogSort.TIMESTAMP_DESC)))
    else:
        logs = cl.read_logs(flt)
    if check_output(output) == "json":
        return emit_json(logs)
    for rec in logs:
        ts = rec.timestamp.astimezone().strftime("%H:%M:%S.%f")[:-3]
        typer.echo(f"{ts} | {logging.getLevelName(rec.level):<7} | {rec.name} - {rec.message}")


@flow_run_app.command("delete")
def flow_run_delete(flow_run_id: str) -> None:
    """Delete a flow run with its task runs, states, logs and artifacts."""
    client().delete_flow_run(_uuid(flow_run_id, "flow run"))
    typer.echo(f"Deleted flow run {flow_run_id}")


@task_run_app.command("ls")
def task_run_ls(flow_run_id: str | None = typer.Option(None, "--flow-run-id", help="only this flow run's"),
                state: list[str] | None = typer.Option(None, "--state", help="state type (COMPLETED, ...)"),
                limit: int = typer.Option(15, help="how many task runs"), output: str = OutputOpt) -> None:
    """List task runs, newest first."""
    from ..schemas import filters as F

    trf = F.TaskRunFilter(
        flow_run_id=F.TaskRunFilterFlowRunId(any_=[_uuid(flow_run_id, "flow run")]) if flow_run_id else None,
        state=F.TaskRunFilterState(type=F.TaskRunFilterStateType(any_=[s.upper() for s in state])) if state else None)
    runs = client().read_task_runs(task_run_filter=trf, limit=limit)
    if check_output(output) == "json":
        return emit_json(runs)
    table("Task runs", ["ID", "Name", "Task", "State", "Start", "Duration"],
          [(r.id, r.name, r.task_key, r.state_name, r.start_time, r.total_run_time) for r in runs])


@task_run_app.command("inspect")
def task_run_inspect(task_run_id: str, output: str = OutputOpt) -> None:
    """Show a task run with its state history."""
    _inspect("task run", task_run_id, output)


def _inspect(what: str, run_id: str, output: str) -> None:
    """A flow run or task run with its state history, as a panel or JSON."""
    cl = client()
    kind = what.replace(" ", "_")
    run = getattr(cl, f"read_{kind}")(_uuid(run_id, what))
    data = run.model_dump(mode="json")
    data["state_history"] = [s.model_dump(mode="json") for s in getattr(cl, f"read_{kind}_states")(run.id)]
    if check_output(output) == "json":
        return emit_json(data)
    details(f"{what.capitalize()} {run.name}", data)


@flow_run_app.command("cancel")
def flow_run_cancel(flow_run_id: str) -> None:
    """Cancel a flow run: one not started yet is Cancelled at once; a running one becomes Cancelling, and the
    serve() process running it stops it (it ends Cancelled and its on_cancellation hooks run)."""
    from ..deployments.definition import deployment_storage

    run = deployment_storage().cancel_flow_run(_uuid(flow_run_id, "flow run"))
    typer.echo(f"Flow run {run.name} ({run.id}) is {run.state_name}")
