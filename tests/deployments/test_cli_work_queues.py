"""`distributary work-queue create / ls / inspect / pause / resume / set-concurrency-limit /
clear-concurrency-limit / delete` on the embedded run store (over the API: tests/server/test_deployments_over_api.py)."""
from __future__ import annotations

import json

from test_cli_deployments import cli

from distributary.runstore import get_storage


def test_work_queue_commands_on_the_embedded_store(run_home, capsys):
    assert cli(capsys, "work-pool", "create", "local")[0] == 0
    assert cli(capsys, "work-pool", "create", "other")[0] == 0
    code, out, _ = cli(capsys, "work-queue", "create", "urgent", "--pool", "local", "--limit", "2", "--priority", "1")
    assert code == 0 and "Created work queue 'urgent' in work pool 'local' (priority 1" in out
    assert cli(capsys, "work-queue", "create", "bulk", "-p", "other", "-d", "big batches")[0] == 0
    code, out, _ = cli(capsys, "work-queue", "ls", "-o", "json")
    assert [(q["work_pool_name"], q["name"], q["priority"], q["concurrency_limit"]) for q in json.loads(out)] == [
        ("local", "urgent", 1, 2), ("local", "default", 2, None), ("other", "default", 1, None),
        ("other", "bulk", 2, None)]
    code, out, _ = cli(capsys, "work-queue", "ls", "--pool", "local")
    assert code == 0 and "urgent" in out and "bulk" not in out
    assert cli(capsys, "work-queue", "pause", "urgent", "--pool", "local")[0] == 0
    assert cli(capsys, "work-queue", "set-concurrency-limit", "urgent", "0", "--pool", "local")[0] == 0
    code, out, _ = cli(capsys, "work-queue", "inspect", "urgent", "--pool", "local", "-o", "json")
    shown = json.loads(out)
    assert (shown["is_paused"], shown["concurrency_limit"], shown["status"]) == (True, 0, "PAUSED")
    assert cli(capsys, "work-queue", "resume", "urgent", "--pool", "local")[0] == 0
    assert cli(capsys, "work-queue", "clear-concurrency-limit", "urgent", "--pool", "local")[0] == 0
    q = get_storage().read_work_queue_by_name("local", "urgent")
    assert not q.is_paused and q.concurrency_limit is None
    code, _, err = cli(capsys, "work-queue", "set-concurrency-limit", "--pool", "local", "--", "urgent", "-1")
    assert code == 2 and "0 or more" in err
    code, _, err = cli(capsys, "work-queue", "create", "neg", "--pool", "local", "--limit", "-1")
    assert code == 2 and "0 or more" in err
    code, _, err = cli(capsys, "work-queue", "create", "urgent", "--pool", "local")
    assert code == 1 and "already has a queue 'urgent'" in err
    code, _, err = cli(capsys, "work-queue", "create", "x", "--pool", "nowhere")
    assert code == 1 and "work-pool create nowhere" in err
    code, _, err = cli(capsys, "work-queue", "inspect", "urgent")
    assert code == 2 and "--pool" in err  # the pool is required
    dep = get_storage().create_deployment(flow_name="work", name="d", work_pool_name="local", work_queue_name="urgent")
    run = get_storage().create_flow_run_from_deployment(dep.id)
    assert cli(capsys, "work-queue", "delete", "urgent", "--pool", "local")[0] == 0
    assert get_storage().read_flow_run(run.id).work_queue_name == "default"  # its waiting run moved
    code, _, err = cli(capsys, "work-queue", "delete", "default", "--pool", "local")
    assert code == 1 and "cannot be deleted" in err
