"""`distributary config set/unset/view` and `distributary profile ls/create/use/inspect/delete`: settings in
profiles (DISTRIBUTARY_HOME/profiles.toml); precedence environment > active profile > default."""
from __future__ import annotations

import typer

from .. import settings
from ._output import CliFailure, OutputOpt, check_output, emit_json

config_app = typer.Typer(help="Settings of the active profile.", no_args_is_help=True)
profile_app = typer.Typer(help="Profiles: named sets of settings.", no_args_is_help=True)


def _setting(var: str) -> settings.Setting:
    name = var[len(settings.PREFIX):] if var.startswith(settings.PREFIX) else var
    s = settings.SETTINGS.get(name)
    if s is None:
        raise CliFailure(f"unknown setting {var!r}; known: " + ", ".join(sorted(x.env for x in
                                                                              settings.SETTINGS.values())))
    return s


@config_app.command("set")
def config_set(assignments: list[str] = typer.Argument(..., metavar="VAR=VALUE...")) -> None:
    """Set settings in the active profile, e.g. `DISTRIBUTARY_RESULTS_PERSIST_BY_DEFAULT=true`."""
    data = settings.load_profiles()
    prof = data["profiles"].setdefault(settings.active_profile_name(), {})
    for a in assignments:
        if "=" not in a:
            raise typer.BadParameter(f"{a!r} is not VAR=VALUE")
        var, value = a.split("=", 1)
        s = _setting(var.strip())
        try:
            s.parse(value)
        except ValueError as exc:
            raise CliFailure(f"{s.env}={value!r} is not valid: {exc}") from None
        prof[s.env] = value
        typer.echo(f"Set {s.env!r} to {value!r}.")
    settings.save_profiles(data)
    typer.echo(f"Updated profile {settings.active_profile_name()!r}.")


@config_app.command("unset")
def config_unset(variables: list[str] = typer.Argument(..., metavar="VAR...")) -> None:
    """Remove settings from the active profile."""
    data = settings.load_profiles()
    prof = data["profiles"].setdefault(settings.active_profile_name(), {})
    for var in variables:
        s = _setting(var)
        if prof.pop(s.env, None) is None:
            raise CliFailure(f"{s.env} is not set in profile {settings.active_profile_name()!r}")
        typer.echo(f"Unset {s.env!r}.")
    settings.save_profiles(data)


@config_app.command("view")
def config_view(show_defaults: bool = typer.Option(False, "--show-defaults", help="also the settings left at "
                                                   "their defaults"),
                hide_defaults: bool = typer.Option(False, "--hide-defaults", hidden=True),
                output: str = OutputOpt) -> None:
    """Show the settings in effect and where each comes from (env, profile, default)."""
    rows = settings.view(show_defaults=show_defaults and not hide_defaults)
    if check_output(output) == "json":
        return emit_json({"profile": settings.active_profile_name(),
                          "settings": {env: {"value": v, "source": src} for env, v, src in rows}})
    typer.echo(f"PROFILE: {settings.active_profile_name()!r}")
    for env, value, source in rows:
        typer.echo(f"{env}={value!r} ({source})")


@profile_app.command("ls")
def profile_ls(output: str = OutputOpt) -> None:
    """List profiles; the active one is marked with *."""
    data, active = settings.load_profiles(), settings.active_profile_name()
    if check_output(output) == "json":
        return emit_json({"active": active, "profiles": sorted(data["profiles"])})
    for name in sorted(data["profiles"]):
        typer.echo(f"{'*' if name == active else ' '} {name}")


@profile_app.command("create")
def profile_create(name: str, from_: str = typer.Option(None, "--from", help="copy this profile's settings")) -> None:
    """Create a profile."""
    data = settings.load_profiles()
    if name in data["profiles"]:
        raise CliFailure(f"profile {name!r} already exists")
    if from_ is not None and from_ not in data["profiles"]:
        raise CliFailure(f"no profile named {from_!r}")
    data["profiles"][name] = dict(data["profiles"][from_]) if from_ else {}
    settings.save_profiles(data)
    typer.echo(f"Created profile {name!r}. Switch to it with `distributary profile use {name}`.")


@profile_app.command("use")
def profile_use(name: str) -> None:
    """Make NAME the active profile."""
    data = settings.load_profiles()
    if name not in data["profiles"]:
        raise CliFailure(f"no profile named {name!r}; create it with `distributary profile create {name}`")
    data["active"] = name
    settings.save_profiles(data)
    typer.echo(f"Connected profile {name!r} is now active.")


@profile_app.command("inspect")
def profile_inspect(name: str = typer.Argument(None, help="default: the active profile"),
                    output: str = OutputOpt) -> None:
    """Show the settings of a profile."""
    data = settings.load_profiles()
    name = name or settings.active_profile_name()
    if name not in data["profiles"]:
        raise CliFailure(f"no profile named {name!r}")
    values = data["profiles"][name]
    if check_output(output) == "json":
        return emit_json({"name": name, "settings": values})
    if not values:
        typer.echo(f"Profile {name!r} is empty.")
    for k, v in values.items():
        typer.echo(f"{k}={v!r}")


@profile_app.command("delete")
def profile_delete(name: str) -> None:
    """Delete a profile (not the active one)."""
    data = settings.load_profiles()
    if name not in data["profiles"]:
        raise CliFailure(f"no profile named {name!r}")
    if name == settings.active_profile_name():
        raise CliFailure(f"profile {name!r} is active: `distributary profile use` another one first")
    del data["profiles"][name]
    settings.save_profiles(data)
    typer.echo(f"Removed profile {name!r}.")
