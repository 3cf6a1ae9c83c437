"""`distributary deployment ls / inspect / run [--param] [--watch] / pause / resume / delete` on the embedded run
store."""
from __future__ import annotations

import json

from distributary.cli import main
from distributary.runstore import get_storage
from distributary.schedules import Cron


def cli(capsys, *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def register(**kw):
    return get_storage().create_deployment(flow_name="work", name="nightly", entrypoint="flows.py:work",
                                           schedules=[Cron("0 2 * * *", timezone="America/New_York")], **kw)


def test_ls_inspect_pause_resume_delete(run_home, capsys):
    dep = register(tags=["etl"])
    get_storage().schedule_runs(dep.id)
    code, out, _ = cli(capsys, "deployment", "ls")
    assert code == 0 and "work/nightly" in out
    code, out, _ = cli(capsys, "deployment", "ls", "-o", "json")
    [listed] = json.loads(out)
    assert listed["schedules"][0]["schedule"] == {"type": "cron", "cron": "0 2 * * *", "timezone": "America/New_York",
                                                  "day_or": True}
    code, out, _ = cli(capsys, "deployment", "inspect", "work/nightly", "-o", "json")
    data = json.loads(out)
    assert code == 0 and data["id"] == str(dep.id) and len(data["upcoming_runs"]) == 3
    assert cli(capsys, "deployment", "pause", "work/nightly")[0] == 0
    assert get_storage().read_deployment(dep.id).paused and get_storage().read_flow_runs() == []
    assert cli(capsys, "deployment", "resume", str(dep.id))[0] == 0
    assert not get_storage().read_deployment(dep.id).paused
    assert cli(capsys, "deployment", "delete", "work/nightly")[0] == 0
    code, _, err = cli(capsys, "deployment", "inspect", "work/nightly")
    assert code == 1 and "no deployment named 'work/nightly'" in err
    code, _, err = cli(capsys, "deployment", "inspect", "nightly")
    assert code == 1 and "flow-name/deployment-name" in err


def test_run_with_params(run_home, capsys):
    register(parameters={"x": 1})
    code, out, _ = cli(capsys, "deployment", "run", "work/nightly", "--param", "x=7", "--param", "mode=fast",
                       "--param", 'cfg={"a": [1]}', "-o", "json")
    run = json.loads(out)
    assert code == 0 and run["parameters"] == {"x": 7, "mode": "fast", "cfg": {"a": [1]}}
    assert run["state"]["type"] == "SCHEDULED"
    code, _, err = cli(capsys, "deployment", "run", "work/nightly", "--param", "novalue")
    assert code == 2 and "key=value" in err


def test_run_watch_follows_a_served_run_to_its_end(served, capsys):
    start, _ = served
    start("on-demand", "on-demand")
    code, out, _ = cli(capsys, "deployment", "run", "work/on-demand", "--param", "x=4", "--watch",
                       "--watch-timeout", "120")
    assert code == 0 and "Created flow run" in out and out.strip().endswith("Completed")
    code, out, err = cli(capsys, "deployment", "run", "work/on-demand", "--param", "mode=crash", "--watch",
                         "--watch-timeout", "120")
    assert code == 1 and "Crashed" in err
