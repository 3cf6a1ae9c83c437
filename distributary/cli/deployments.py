"""`distributary deployment ls / inspect / run / pause / resume / delete` over the run store."""
from __future__ import annotations

import json
import time
from typing import Any

import typer

from ..errors import ConfigurationError
from ._output import CliFailure, OutputOpt, check_output, details, emit_json, table

app = typer.Typer(help="Deployments: list, inspect, run, pause, resume, delete.", no_args_is_help=True)


def _storage() -> Any:
    from ..deployments.definition import deployment_storage as get_storage

    return get_storage()


def _deployment(name: str) -> Any:
    """A deployment by `flow/deployment` name or by id."""
    import uuid

    st = _storage()
    try:
        return st.read_deployment(uuid.UUID(name))
    except ValueError:
        return st.read_deployment_by_name(name)


def _schedule_text(s: Any) -> str:
    d = s.schedule
    what = {"cron": lambda: f"cron {d['cron']!r}", "interval": lambda: f"every {d['interval']:g}s",
            "rrule": lambda: f"rrule {d['rrule']!r}"}.get(d.get("type"), lambda: str(d))()
    tz = f" ({d['timezone']})" if d.get("timezone") else ""
    return f"{what}{tz}{'' if s.active else ' [inactive]'}"


@app.command("ls")
def deployment_ls(output: str = OutputOpt) -> None:
    """List deployments."""
    deps = _storage().read_deployments()
    if check_output(output) == "json":
        return emit_json(deps)
    table("Deployments", ["Name", "ID", "Schedules", "Paused", "Tags"],
          [(d.full_name, d.id, "; ".join(_schedule_text(s) for s in d.schedules), d.paused, d.tags) for d in deps])


@app.command("inspect")
def deployment_inspect(name: str = typer.Argument(..., help="flow-name/deployment-name or id"),
                       output: str = OutputOpt) -> None:
    """Show a deployment with its schedules and upcoming runs."""
    dep = _deployment(name)
    data = dep.model_dump(mode="json")
    upcoming = _storage().read_due_runs([dep.id], before=time.time() + 3650 * 86400, limit=5)
    data["upcoming_runs"] = [{"id": str(r.id), "name": r.name, "scheduled": r.expected_start_time.isoformat()
                              if r.expected_start_time else None, "state": r.state_name} for r in upcoming]
    if check_output(output) == "json":
        return emit_json(data)
    details(f"Deployment {dep.full_name}", data)


def _params(param: list[str] | None, params: str | None, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    """`--params` JSON, then each `--param key=value` over it, cast with the flow's parameter schema when there is
    one (a string parameter keeps the text given; a name the flow does not take is an error)."""
    from ..deployments.parameters import cast_parameters

    out: dict[str, Any] = {}
    if params:
        try:
            loaded = json.loads(params)
        except ValueError as exc:
            raise typer.BadParameter(f"--params must be a JSON object: {exc}") from None
        if not isinstance(loaded, dict):
            raise typer.BadParameter("--params must be a JSON object, e.g. '{\"x\": 1}'")
        out.update(loaded)
    try:
        out.update(cast_parameters(param or (), schema))
    except ConfigurationError as exc:
        raise typer.BadParameter(str(exc)) from None
    return out


@app.command("run")
def deployment_run(name: str = typer.Argument(..., help="flow-name/deployment-name or id"),
                   param: list[str] | None = typer.Option(None, "--param", "-p", help="key=value (JSON values)"),
                   params: str | None = typer.Option(None, "--params", help="all parameters as a JSON object"),
                   tag: list[str] | None = typer.Option(None, "--tag", help="extra tags of the run"),
                   watch: bool = typer.Option(False, "--watch", help="wait for the run to finish, showing its states"),
                   timeout: float | None = typer.Option(None, "--watch-timeout", help="stop watching after seconds"),
                   output: str = OutputOpt) -> None:
    """Create a run of the deployment (a serve() process serving it picks it up)."""
    from ..deployments.run import run_deployment

    check_output(output)
    dep = _deployment(name)
    run = run_deployment(str(dep.id), parameters=_params(param, params, dep.parameter_openapi_schema), tags=tag,
                         timeout=0)
    if output == "table":
        typer.echo(f"Created flow run {run.name!r} ({run.id}) of deployment {dep.full_name}")
    if watch:
        st = _storage()
        deadline = None if timeout is None else time.monotonic() + timeout
        seen = None
        while True:
            run = st.read_flow_run(run.id)
            if run.state_name != seen and output == "table":
                typer.echo(f"  {run.state_name}")
                seen = run.state_name
            if run.state is not None and run.state.is_final():
                break
            if deadline is not None and time.monotonic() > deadline:
                break
            time.sleep(0.5)
    if output == "json":
        return emit_json(run)
    if watch and run.state is not None and run.state.is_final() and not run.state.is_completed():
        raise CliFailure(f"flow run {run.name} ended {run.state_name}: {run.state.message}")


@app.command("pause")
def deployment_pause(name: str = typer.Argument(..., help="flow-name/deployment-name or id")) -> None:
    """Pause a deployment: no new scheduled runs; its future scheduled runs are removed."""
    dep = _deployment(name)
    _storage().update_deployment(dep.id, paused=True)
    typer.echo(f"Paused deployment {dep.full_name}")


@app.command("resume")
def deployment_resume(name: str = typer.Argument(..., help="flow-name/deployment-name or id")) -> None:
    """Resume a paused deployment (a serve() process serving it schedules its runs again)."""
    dep = _deployment(name)
    _storage().update_deployment(dep.id, paused=False)
    typer.echo(f"Resumed deployment {dep.full_name}")


@app.command("delete")
def deployment_delete(name: str = typer.Argument(..., help="flow-name/deployment-name or id")) -> None:
    """Delete a deployment with its schedules and runs that have not started."""
    dep = _deployment(name)
    _storage().delete_deployment(dep.id)
    typer.echo(f"Deleted deployment {dep.full_name}")


def deploy_command(entrypoint: str = typer.Argument(..., help="path/to/file.py:flow_function"),
                   name: str = typer.Option(..., "--name", "-n", help="the deployment's name"),
                   pool: str = typer.Option(..., "--pool", "-p", help="the work pool its runs go to"),
                   work_queue: str | None = typer.Option(None, "--work-queue", "-q",
                                                         help="the pool's queue its runs wait in (created if "
                                                              "missing; default: the pool's default queue)"),
                   cron: str | None = typer.Option(None, "--cron"),
                   interval: float | None = typer.Option(None, "--interval", help="seconds"),
                   rrule: str | None = typer.Option(None, "--rrule"),
                   timezone: str | None = typer.Option(None, "--timezone"),
                   param: list[str] | None = typer.Option(None, "--param", help="key=value (JSON values)"),
                   tag: list[str] | None = typer.Option(None, "--tag"),
                   job_variable: list[str] | None = typer.Option(None, "--job-variable", "-jv",
                                                                 help="key=value (JSON values)"),
                   paused: bool = typer.Option(False, "--paused"),
                   enforce_parameter_schema: bool = typer.Option(
                       True, "--enforce-parameter-schema/--no-enforce-parameter-schema",
                       help="refuse runs whose parameters do not validate against the flow's signature")) -> None:
    """Deploy a flow from its file to a work pool (`distributary deploy flows.py:etl -n nightly -p local
    [-q QUEUE]`)."""
    from ..deployments.definition import deploy, load_flow

    from ..deployments.parameters import parameter_schema

    flow = load_flow(entrypoint)
    deploy(flow, name, pool, work_queue_name=work_queue, cron=cron, interval=interval, rrule=rrule,
           timezone=timezone, parameters=_params(param, None, parameter_schema(flow.fn)), tags=tag,
           job_variables=_params(job_variable, None), paused=paused,
           enforce_parameter_schema=enforce_parameter_schema)
