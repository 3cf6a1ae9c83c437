"""Docker and Kubernetes jobs: a run's job (its pool's base job template rendered with the deployment's job
variables) as a Docker container-create body or a Kubernetes `batch/v1` Job manifest, validated, and submitted
through the `docker` or `kubectl` command line.

Rendering and validation need neither Docker nor a cluster; `submitter(kind).check()` tells, before any run is
claimed, whether the command line is there, and says what to install when it is not."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from typing import Any

from ..errors import ConfigurationError

CONTAINER_TYPES = ("docker", "kubernetes")
RUN_COMMAND = ["python", "-m", "distributary.deployments.execute"]
_K8S_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|Ki|M|Mi|G|Gi|T|Ti|P|Pi|E|Ei)?$")
_DOCKER_MEMORY = re.compile(r"^([0-9]+)([bkmg]?)$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024 ** 2, "g": 1024 ** 3}


class InfrastructureUnavailable(RuntimeError):
    """The `docker` or `kubectl` command line this pool type submits through is not reachable."""


def _command(job: dict[str, Any], run_id: str) -> list[str]:
    import shlex

    return shlex.split(str(job["command"])) if job.get("command") else [*RUN_COMMAND, run_id]


def _env(job: dict[str, Any], run_id: str) -> dict[str, str]:
    env = job.get("env") or {}
    if not isinstance(env, dict):
        raise ConfigurationError(f"job variable env must be a mapping of names to strings, got {env!r}")
    return {**{str(k): str(v) for k, v in env.items()}, "DISTRIBUTARY__FLOW_RUN_ID": run_id}


def _image(job: dict[str, Any], kind: str) -> str:
    image = job.get("image")
    if not image or not isinstance(image, str):
        raise ConfigurationError(f"a {kind} job needs an image: set job_variables={{'image': 'REGISTRY/NAME:TAG'}} "
                                 "on the deployment, or a default image in the pool's base job template")
    return image


def docker_container(job: dict[str, Any], run_id: str) -> dict[str, Any]:
    """The Docker Engine container-create body of a run's rendered job (`cpu`: cores, e.g. "1.5"; `memory`:
    e.g. "512m" or "2g")."""
    host: dict[str, Any] = {}
    if job.get("cpu") is not None:
        try:
            cpus = float(job["cpu"])
        except ValueError:
            raise ConfigurationError(f"docker cpu must be a number of cores such as '1.5', got {job['cpu']!r}") from None
        if cpus <= 0:
            raise ConfigurationError(f"docker cpu must be positive, got {job['cpu']!r}")
        host["NanoCpus"] = int(cpus * 1e9)
    if job.get("memory") is not None:
        m = _DOCKER_MEMORY.match(str(job["memory"]))
        if m is None:
            raise ConfigurationError(f"docker memory must be like '512m' or '2g', got {job['memory']!r}")
        host["Memory"] = int(m.group(1)) * _UNITS[m.group(2).lower()]
    body: dict[str, Any] = {"Image": _image(job, "docker"), "Cmd": _command(job, run_id),
                            "Env": [f"{k}={v}" for k, v in sorted(_env(job, run_id).items())],
                            "Labels": {"io.distributary.flow-run-id": run_id}, "HostConfig": host}
    if job.get("working_dir"):
        body["WorkingDir"] = str(job["working_dir"])
    return body


def kubernetes_job(job: dict[str, Any], run_id: str, namespace: str = "default") -> dict[str, Any]:
    """The `batch/v1` Job manifest of a run's rendered job (`cpu`/`memory`: Kubernetes quantities such as "500m",
    "4", "16Gi"; they are the container's requests and limits)."""
    resources: dict[str, str] = {}
    for key in ("cpu", "memory"):
        if job.get(key) is not None:
            if not _K8S_QUANTITY.match(str(job[key])):
                raise ConfigurationError(f"kubernetes {key} must be a quantity such as '500m', '4' or '16Gi', "
                                         f"got {job[key]!r}")
            resources[key] = str(job[key])
    container: dict[str, Any] = {
        "name": "flow-run", "image": _image(job, "kubernetes"), "command": _command(job, run_id),
        "env": [{"name": k, "value": v} for k, v in sorted(_env(job, run_id).items())]}
    if resources:
        container["resources"] = {"requests": resources, "limits": dict(resources)}
    if job.get("working_dir"):
        container["workingDir"] = str(job["working_dir"])
    labels = {"distributary.io/flow-run-id": run_id}
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": f"flow-run-{run_id}"[:63].rstrip("-"), "namespace": namespace, "labels": labels},
            "spec": {"backoffLimit": 0, "template": {"metadata": {"labels": labels},
                                                     "spec": {"restartPolicy": "Never", "containers": [container]}}}}


def manifest(kind: str, job: dict[str, Any], run_id: str) -> dict[str, Any]:
    """The validated manifest of a run's rendered job for a `docker` or `kubernetes` pool."""
    if kind == "docker":
        return docker_container(job, run_id)
    if kind == "kubernetes":
        return kubernetes_job(job, run_id)
    raise ConfigurationError(f"pool type {kind!r} has no container manifest: use one of {', '.join(CONTAINER_TYPES)}")


class Submitter:
    """Submits manifests through a command line (`docker` or `kubectl`)."""

    def __init__(self, kind: str, executable: str, install: str) -> None:
        self.kind, self.executable, self.install = kind, executable, install

    def check(self) -> str:
        """The path of the command line; `InfrastructureUnavailable` saying what to install when it is missing."""
        path = shutil.which(self.executable)
        if path is None:
            raise InfrastructureUnavailable(
                f"cannot submit {self.kind} jobs: `{self.executable}` is not on PATH. {self.install} "
                f"(`distributary work-pool preview` renders a run's {self.kind} manifest without it)")
        return path

    def args(self, spec: dict[str, Any]) -> list[str]:
        if self.kind == "kubernetes":
            return [self.check(), "apply", "-f", "-"]
        out = [self.check(), "run", "--detach"]
        for e in spec["Env"]:
            out += ["--env", e]
        for k, v in spec["Labels"].items():
            out += ["--label", f"{k}={v}"]
        host = spec["HostConfig"]
        if "NanoCpus" in host:
            out += ["--cpus", f"{host['NanoCpus'] / 1e9:g}"]
        if "Memory" in host:
            out += ["--memory", f"{host['Memory']}b"]
        if "WorkingDir" in spec:
            out += ["--workdir", spec["WorkingDir"]]
        return [*out, spec["Image"], *spec["Cmd"]]

    def submit(self, spec: dict[str, Any]) -> str:
        """Submit the manifest; the command line's output (the container id, or kubectl's `job.batch/... created`)."""
        stdin = json.dumps(spec) if self.kind == "kubernetes" else None
        try:
            done = subprocess.run(self.args(spec), input=stdin, capture_output=True, text=True, timeout=120)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise InfrastructureUnavailable(f"cannot submit the {self.kind} job: {exc}") from exc
        if done.returncode != 0:
            raise InfrastructureUnavailable(f"`{self.executable}` refused the {self.kind} job "
                                            f"(exit {done.returncode}): {done.stderr.strip()[-500:]}")
        return done.stdout.strip()


def submitter(kind: str) -> Submitter:
    if kind == "docker":
        return Submitter("docker", "docker", "Install Docker and start its daemon, or run the worker where it is.")
    if kind == "kubernetes":
        return Submitter("kubernetes", "kubectl", "Install kubectl and point its context at your cluster.")
    raise ConfigurationError(f"pool type {kind!r} is not submitted as a container: use docker or kubernetes")
