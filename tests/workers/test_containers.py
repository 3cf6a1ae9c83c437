"""Docker and Kubernetes pools: a run's job rendered from the pool's base job template and the deployment's job
variables into a validated container-create body / batch/v1 Job manifest, and a clear error where the `docker`
or `kubectl` command line is missing (nothing is submitted here: no daemon or cluster on the test machine)."""
from __future__ import annotations

import json

import pytest

from distributary.errors import ConfigurationError
from distributary.runstore.work_pools import default_job_template, render_job
from distributary.workers.containers import InfrastructureUnavailable, manifest, submitter


def _job(kind, **variables):
    return render_job(default_job_template(kind), variables)


def test_kubernetes_job_manifest_carries_image_resources_env_and_the_run():
    m = manifest("kubernetes", _job("kubernetes", image="reg/train:1", cpu="4", memory="16Gi",
                                    env={"MODEL_VERSION": "v2"}), "run-1")
    assert m["apiVersion"] == "batch/v1" and m["kind"] == "Job" and m["metadata"]["name"] == "flow-run-run-1"
    (c,) = m["spec"]["template"]["spec"]["containers"]
    assert c["image"] == "reg/train:1" and c["command"][-2:] == ["distributary.deployments.execute", "run-1"]
    assert c["resources"] == {"requests": {"cpu": "4", "memory": "16Gi"}, "limits": {"cpu": "4", "memory": "16Gi"}}
    assert {"name": "MODEL_VERSION", "value": "v2"} in c["env"]
    assert {"name": "DISTRIBUTARY__FLOW_RUN_ID", "value": "run-1"} in c["env"]
    assert json.loads(json.dumps(m)) == m  # a real manifest: plain JSON, as `kubectl apply -f -` reads it


def test_docker_container_body_and_its_docker_run_arguments():
    m = manifest("docker", _job("docker", image="py:3.12", cpu="1.5", memory="512m", command="python x.py",
                                working_dir="/app"), "r2")
    assert m["Image"] == "py:3.12" and m["Cmd"] == ["python", "x.py"] and m["WorkingDir"] == "/app"
    assert m["HostConfig"] == {"NanoCpus": 1_500_000_000, "Memory": 512 * 1024 ** 2}
    assert "DISTRIBUTARY__FLOW_RUN_ID=r2" in m["Env"]
    sub = submitter("docker")
    sub.check = lambda: "/usr/bin/docker"  # type: ignore[method-assign]
    args = sub.args(m)
    assert args[:3] == ["/usr/bin/docker", "run", "--detach"] and args[-3:] == ["py:3.12", "python", "x.py"]
    assert args[args.index("--cpus") + 1] == "1.5" and "--workdir" in args


@pytest.mark.parametrize("kind,variables,says", [
    ("kubernetes", {}, "needs an image"),
    ("kubernetes", {"image": "a", "memory": "lots"}, "kubernetes memory must be a quantity"),
    ("docker", {"image": "a", "cpu": "two"}, "docker cpu must be a number"),
    ("docker", {"image": "a", "memory": "16Gi"}, "docker memory must be like"),
])
def test_invalid_job_variables_are_refused_with_what_to_set(kind, variables, says):
    with pytest.raises(ConfigurationError, match=says):
        manifest(kind, _job(kind, **variables), "r")


@pytest.mark.parametrize("kind,exe", [("docker", "docker"), ("kubernetes", "kubectl")])
def test_a_missing_command_line_is_a_clear_error_before_anything_is_claimed(kind, exe, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(InfrastructureUnavailable, match=f"`{exe}` is not on PATH"):
        submitter(kind).submit(manifest(kind, _job(kind, image="a"), "r"))


def test_cli_preview_renders_a_deployments_job_and_worker_start_says_what_is_missing(run_home, capsys, monkeypatch,
                                                                                     tmp_path):
    from distributary.cli import main

    assert main(["work-pool", "create", "k8s", "--type", "kubernetes"]) == 0
    capsys.readouterr()
    assert main(["work-pool", "preview", "k8s", "--job-variables", '{"image": "reg/a:1", "cpu": "500m"}']) == 0
    m = json.loads(capsys.readouterr().out)
    assert m["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"] == {"cpu": "500m"}
    monkeypatch.setenv("PATH", str(tmp_path))
    assert main(["worker", "start", "--pool", "k8s", "--run-once"]) != 0
    assert "`kubectl` is not on PATH" in capsys.readouterr().err
