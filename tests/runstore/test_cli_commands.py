"""The CLI over the run store: runs, task runs, logs, artifacts, variables, config and profiles; `--output json`;
exit codes 0 (success), 1 (not found / failed, one line), 2 (usage)."""
from __future__ import annotations

import json

import pytest
from events import flow_with_tasks

from distributary import settings
from distributary.cli import main
from distributary.engine import transitions
from distributary.runstore import ensure_sink


def cli(capsys, *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def recorded(store_env):
    sink = ensure_sink()
    fr, trs, ev = flow_with_tasks(3, flow_name="nightly-etl", fail_every=2)
    sink.handle(ev)
    transitions.flush(30)
    return fr, trs


def test_flow_and_flow_run_commands(recorded, capsys):
    fr, trs = recorded
    code, out, _ = cli(capsys, "flow", "ls")
    assert code == 0 and "nightly-etl" in out
    code, out, _ = cli(capsys, "flow-run", "ls", "--output", "json", "--flow-name", "nightly-etl",
                       "--state", "completed", "--tag", "nightly", "--limit", "5")
    assert code == 0 and [r["id"] for r in json.loads(out)] == [str(fr.id)]
    code, out, _ = cli(capsys, "flow-run", "ls", "--state", "FAILED", "-o", "json")
    assert json.loads(out) == []
    code, out, _ = cli(capsys, "flow-run", "inspect", str(fr.id), "-o", "json")
    assert [s["type"] for s in json.loads(out)["state_history"]] == ["PENDING", "RUNNING", "COMPLETED"]
    code, out, _ = cli(capsys, "flow-run", "logs", str(fr.id))
    assert code == 0 and "hello" in out and "flow says" in out
    code, out, _ = cli(capsys, "flow-run", "logs", str(fr.id), "--tail", "1")
    assert "flow says" in out and "hello" not in out
    code, out, _ = cli(capsys, "task-run", "ls", "--flow-run-id", str(fr.id), "--state", "FAILED", "-o", "json")
    assert sorted(r["name"] for r in json.loads(out)) == ["add-0", "add-2"]
    code, out, _ = cli(capsys, "task-run", "inspect", str(trs[1].id), "-o", "json")
    assert json.loads(out)["state"]["type"] == "COMPLETED"
    code, out, _ = cli(capsys, "flow-run", "delete", str(fr.id))
    assert code == 0
    code, _, err = cli(capsys, "flow-run", "inspect", str(fr.id))
    assert code == 1 and err.strip().startswith("Error: no flow run") and len(err.strip().splitlines()) == 1


def test_usage_errors_exit_2(run_home, capsys):
    assert cli(capsys, "flow-run", "inspect", "not-a-uuid")[0] == 2
    assert cli(capsys, "flow-run", "nope")[0] == 2
    assert cli(capsys, "flow-run", "ls", "--output", "yaml")[0] == 2


def test_artifact_commands(store_env, capsys):
    from distributary.artifacts import create_markdown_artifact

    create_markdown_artifact("# one", key="my-report")
    create_markdown_artifact("# two", key="my-report")
    code, out, _ = cli(capsys, "artifact", "ls", "-o", "json")
    assert code == 0 and [(a["key"], a["data"]) for a in json.loads(out)] == [("my-report", "# two")]
    code, out, _ = cli(capsys, "artifact", "inspect", "my-report")
    assert [a["data"] for a in json.loads(out)] == ["# two", "# one"]
    code, out, _ = cli(capsys, "artifact", "delete", "my-report")
    assert code == 0 and "2 version" in out
    code, _, err = cli(capsys, "artifact", "inspect", "my-report")
    assert code == 1 and "no artifact with key 'my-report'" in err


def test_variable_commands(store_env, capsys):
    assert cli(capsys, "variable", "set", "limits", '{"max": 3}')[0] == 0
    assert cli(capsys, "variable", "set", "limits", "4")[0] == 1  # exists: --overwrite needed
    assert cli(capsys, "variable", "set", "limits", "4", "--overwrite")[0] == 0
    code, out, _ = cli(capsys, "variable", "get", "limits")
    assert code == 0 and json.loads(out) == 4
    code, out, _ = cli(capsys, "variable", "ls", "-o", "json")
    assert [v["name"] for v in json.loads(out)] == ["limits"]
    assert cli(capsys, "variable", "unset", "limits")[0] == 0
    assert cli(capsys, "variable", "get", "limits")[0] == 1


def test_config_and_profiles_precedence(run_home, capsys, monkeypatch):
    monkeypatch.delenv("DISTRIBUTARY_RESULTS_PERSIST_BY_DEFAULT", raising=False)
    assert settings.get("RESULTS_PERSIST_BY_DEFAULT") is False
    assert cli(capsys, "config", "set", "DISTRIBUTARY_RESULTS_PERSIST_BY_DEFAULT=true")[0] == 0
    assert settings.get("RESULTS_PERSIST_BY_DEFAULT") is True  # profile > default
    code, out, _ = cli(capsys, "config", "view")
    assert "DISTRIBUTARY_RESULTS_PERSIST_BY_DEFAULT='True' (profile)" in out
    monkeypatch.setenv("DISTRIBUTARY_RESULTS_PERSIST_BY_DEFAULT", "false")
    assert settings.get("RESULTS_PERSIST_BY_DEFAULT") is False  # env > profile
    monkeypatch.delenv("DISTRIBUTARY_RESULTS_PERSIST_BY_DEFAULT")
    assert cli(capsys, "config", "set", "DISTRIBUTARY_RESULTS_PERSIST_BY_DEFAULT=maybe")[0] == 1
    assert cli(capsys, "config", "set", "DISTRIBUTARY_NOT_A_SETTING=1")[0] == 1
    assert cli(capsys, "profile", "create", "dev")[0] == 0
    assert cli(capsys, "profile", "create", "dev")[0] == 1
    assert cli(capsys, "profile", "use", "dev")[0] == 0
    assert settings.get("RESULTS_PERSIST_BY_DEFAULT") is False  # dev has no value: the default
    code, out, _ = cli(capsys, "profile", "ls")
    assert "* dev" in out and "  default" in out
    assert cli(capsys, "profile", "delete", "dev")[0] == 1  # active
    assert cli(capsys, "profile", "use", "default")[0] == 0
    code, out, _ = cli(capsys, "profile", "inspect", "-o", "json")
    assert json.loads(out)["settings"] == {"DISTRIBUTARY_RESULTS_PERSIST_BY_DEFAULT": "true"}
    assert cli(capsys, "config", "unset", "DISTRIBUTARY_RESULTS_PERSIST_BY_DEFAULT")[0] == 0
    assert settings.get("RESULTS_PERSIST_BY_DEFAULT") is False
    assert cli(capsys, "profile", "delete", "dev")[0] == 0
    assert cli(capsys, "profile", "use", "ghost")[0] == 1
