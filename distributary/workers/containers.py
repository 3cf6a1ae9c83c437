"""Docker and Kubernetes jobs: a run's job (its pool's base job template rendered with the deployment's job
variables) as a Docker container-create body or a Kubernetes `batch/v1` Job manifest, validated, and submitted
through the `docker` or `kubectl` command line.

Rendering and validation need neither Docker nor a cluster; `submitter(kind).check()` tells, before any run is
claimed, whether the command line is there, and says what to install when it is not."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterable
from typing import Any

from ..errors import ConfigurationError

CONTAINER_TYPES = ("docker", "kubernetes")
RUN_COMMAND = ["python", "-m", "distributary.deployments.execute"]
K8S_RUN_LABEL = "distributary.io/flow-run-id"
_K8S_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|Ki|M|Mi|G|Gi|T|Ti|P|Pi|E|Ei)?$")
_K8S_LABEL = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")
_DOCKER_MEMORY = re.compile(r"^([0-9]+)([bkmg]?)$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024 ** 2, "g": 1024 ** 3}


class InfrastructureUnavailable(RuntimeError):
    """The `docker` or `kubectl` command line this pool type submits through is not reachable."""


def _command(job: dict[str, Any], run_id: str) -> list[str]:
    import shlex

    return shlex.split(str(job["command"])) if job.get("command") else [*RUN_COMMAND, run_id]


def _mapping(job: dict[str, Any], key: str) -> dict[str, str]:
    value = job.get(key) or {}
    if not isinstance(value, dict):
        raise ConfigurationError(f"job variable {key} must be a mapping of names to strings, got {value!r}")
    return {str(k): str(v) for k, v in value.items()}


def _env(job: dict[str, Any], run_id: str, extra: dict[str, str] | None) -> dict[str, str]:
    """The container's environment: `extra` (the worker's DISTRIBUTARY_* settings), then the job's env over it."""
    return {**(extra or {}), **_mapping(job, "env"), "DISTRIBUTARY__FLOW_RUN_ID": run_id}


def _labels(job: dict[str, Any], run_id: str, key: str) -> dict[str, str]:
    return {**_mapping(job, "labels"), key: run_id}


def _image(job: dict[str, Any], kind: str) -> str:
    image = job.get("image")
    if not image or not isinstance(image, str):
        raise ConfigurationError(f"a {kind} job needs an image: set job_variables={{'image': 'REGISTRY/NAME:TAG'}} "
                                 "on the deployment, or a default image in the pool's base job template")
    return image


def _name(run_id: str, attempt: str | None) -> str:
    """`flow-run-ID`, or `flow-run-ID-ATTEMPT` from a worker: a run retried after a crash is submitted again,
    and a container or Job name is taken until it is removed."""
    return (f"flow-run-{run_id}" + (f"-{attempt}" if attempt else ""))[:63].rstrip("-")


def docker_container(job: dict[str, Any], run_id: str, env: dict[str, str] | None = None,
                     attempt: str | None = None) -> dict[str, Any]:
    """The Docker Engine container-create body of a run's rendered job (`cpu`: cores, e.g. "1.5"; `memory`:
    e.g. "512m" or "2g"); `env`: variables under the job's own (the worker's settings). The container's name,
    which the Engine API takes beside the body, is `Name` here."""
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
    body: dict[str, Any] = {"Name": _name(run_id, attempt), "Image": _image(job, "docker"),
                            "Cmd": _command(job, run_id),
                            "Env": [f"{k}={v}" for k, v in sorted(_env(job, run_id, env).items())],
                            "Labels": _labels(job, run_id, "io.distributary.flow-run-id"), "HostConfig": host}
    if job.get("working_dir"):
        body["WorkingDir"] = str(job["working_dir"])
    return body


def kubernetes_job(job: dict[str, Any], run_id: str, env: dict[str, str] | None = None,
                   attempt: str | None = None) -> dict[str, Any]:
    """The `batch/v1` Job manifest of a run's rendered job (`cpu`/`memory`: Kubernetes quantities such as "500m",
    "4", "16Gi"; they are the container's requests and limits; `namespace`, `labels`: the Job's)."""
    resources: dict[str, str] = {}
    for key in ("cpu", "memory"):
        if job.get(key) is not None:
            if not _K8S_QUANTITY.match(str(job[key])):
                raise ConfigurationError(f"kubernetes {key} must be a quantity such as '500m', '4' or '16Gi', "
                                         f"got {job[key]!r}")
            resources[key] = str(job[key])
    container: dict[str, Any] = {
        "name": "flow-run", "image": _image(job, "kubernetes"), "command": _command(job, run_id),
        "env": [{"name": k, "value": v} for k, v in sorted(_env(job, run_id, env).items())]}
    if resources:
        container["resources"] = {"requests": resources, "limits": dict(resources)}
    if job.get("working_dir"):
        container["workingDir"] = str(job["working_dir"])
    labels = _labels(job, run_id, K8S_RUN_LABEL)
    for k, v in labels.items():
        if not _K8S_LABEL.match(v) or len(v) > 63:
            raise ConfigurationError(f"kubernetes label {k}={v!r}: a label value is at most 63 letters, digits, "
                                     "'-', '_' or '.', starting and ending with a letter or digit")
    namespace = str(job.get("namespace") or "default")
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": _name(run_id, attempt), "namespace": namespace, "labels": labels},
            "spec": {"backoffLimit": 0, "template": {"metadata": {"labels": labels},
                                                     "spec": {"restartPolicy": "Never", "containers": [container]}}}}


def manifest(kind: str, job: dict[str, Any], run_id: str, env: dict[str, str] | None = None,
             attempt: str | None = None) -> dict[str, Any]:
    """The validated manifest of a run's rendered job for a `docker` or `kubernetes` pool (`attempt`: a suffix
    of the container / Job name, unique per submission)."""
    if kind == "docker":
        return docker_container(job, run_id, env, attempt)
    if kind == "kubernetes":
        return kubernetes_job(job, run_id, env, attempt)
    raise ConfigurationError(f"pool type {kind!r} has no container manifest: use one of {', '.join(CONTAINER_TYPES)}")


class Submitter:
    """Submits manifests through a command line (`docker` or `kubectl`), reads back whether the submitted
    container / Job has finished, and stops it. A submitted run is known by its infrastructure id: the container
    id (docker), `namespace:job-name` (kubernetes)."""

    def __init__(self, kind: str, executable: str, install: str, hint: str) -> None:
        self.kind, self.executable, self.install, self.hint = kind, executable, install, hint

    def check(self) -> str:
        """The path of the command line; `InfrastructureUnavailable` saying what to install when it is missing."""
        path = shutil.which(self.executable)
        if path is None:
            raise InfrastructureUnavailable(
                f"cannot submit {self.kind} jobs: `{self.executable}` is not on PATH. {self.install} "
                f"(`distributary work-pool preview` renders a run's {self.kind} manifest without it)")
        return path

    def args(self, spec: dict[str, Any], hidden: Iterable[str] = ()) -> list[str]:
        """The command line that submits `spec`; `hidden`: variables passed by name only (`--env NAME`, the value
        from the command line's own environment), so secrets are not in the argument list."""
        if self.kind == "kubernetes":
            return [self.check(), "apply", "-f", "-", "-o", "name"]
        out = [self.check(), "run", "--detach", "--name", spec["Name"]]
        for e in spec["Env"]:
            out += ["--env", e]
        for name in hidden:
            out += ["--env", name]
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

    def _call(self, args: list[str], what: str, stdin: str | None = None, env: dict[str, str] | None = None,
              timeout: float = 120) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run(args, input=stdin, capture_output=True, text=True, timeout=timeout,
                                  env=None if env is None else {**os.environ, **env})
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise InfrastructureUnavailable(f"cannot {what}: {exc}. {self.hint}") from exc

    def submit(self, spec: dict[str, Any], secret_env: dict[str, str] | None = None) -> str:
        """Submit the manifest (`secret_env`: more variables for the container, kept out of the argument list);
        the infrastructure id of what was started. A refusal (an image that cannot be pulled, no daemon, no
        access to the cluster) is `InfrastructureUnavailable` with the command line's own words."""
        secret_env = secret_env or {}
        if self.kind == "kubernetes":
            container = spec["spec"]["template"]["spec"]["containers"][0]
            container["env"] += [{"name": k, "value": v} for k, v in sorted(secret_env.items())]
            done = self._call(self.args(spec), "submit the kubernetes job", stdin=json.dumps(spec))
        else:
            done = self._call(self.args(spec, sorted(secret_env)), "submit the docker container", env=secret_env)
        if done.returncode != 0:
            raise InfrastructureUnavailable(f"`{self.executable}` refused the {self.kind} job "
                                            f"(exit {done.returncode}): {done.stderr.strip()[-800:]}. {self.hint}")
        if self.kind == "kubernetes":
            return f"{spec['metadata']['namespace']}:{spec['metadata']['name']}"
        lines = done.stdout.split()
        if not lines:
            raise InfrastructureUnavailable(f"`{self.executable} run` printed no container id. {self.hint}")
        return lines[-1]

    def status(self, infrastructure_id: str, run_id: str) -> tuple[int | None, str | None]:
        """(exit code or None while it runs, a failure that will not resolve itself, such as an image the cluster
        cannot pull) of run `run_id`'s container or Job. One that no longer exists: (-1, why)."""
        if self.kind == "docker":
            done = self._call([self.check(), "inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}",
                               infrastructure_id], "inspect the docker container", timeout=30)
            if done.returncode != 0:
                if "no such" in done.stderr.lower():
                    return -1, f"its docker container {infrastructure_id} no longer exists"
                raise InfrastructureUnavailable(f"`docker inspect` failed: {done.stderr.strip()[-300:]}")
            status, _, code = done.stdout.strip().partition(" ")
            return (int(code or 1), None) if status in ("exited", "dead") else (None, None)
        namespace, _, name = infrastructure_id.partition(":")
        done = self._call([self.check(), "get", "jobs,pods", "-n", namespace, "-l", f"{K8S_RUN_LABEL}={run_id}",
                           "-o", "json"], "read the kubernetes job", timeout=30)
        if done.returncode != 0:
            raise InfrastructureUnavailable(f"`kubectl get` failed: {done.stderr.strip()[-300:]}")
        return _job_status(json.loads(done.stdout or "{}").get("items", []), name, infrastructure_id)

    def stop(self, infrastructure_id: str) -> None:
        """Stop the container (`docker stop`) or delete the Job and its pods (`kubectl delete job`)."""
        if self.kind == "docker":
            args = [self.check(), "stop", infrastructure_id]
        else:
            namespace, _, name = infrastructure_id.partition(":")
            args = [self.check(), "delete", "job", name, "-n", namespace, "--ignore-not-found"]
        done = self._call(args, f"stop the {self.kind} job {infrastructure_id}")
        if done.returncode != 0:
            raise InfrastructureUnavailable(f"`{' '.join(args[1:3])}` failed for {infrastructure_id}: "
                                            f"{done.stderr.strip()[-300:]}")


_POD_FAILURES = ("ErrImagePull", "ImagePullBackOff", "InvalidImageName", "CreateContainerConfigError",
                 "CreateContainerError")


def _job_status(items: list[dict[str, Any]], name: str, infrastructure_id: str) -> tuple[int | None, str | None]:
    """A Job's outcome from `kubectl get jobs,pods -l distributary.io/flow-run-id=RUN -o json` (the Job and
    its pods carry the label): succeeded -> 0, failed -> 1, a pod stuck on its image or configuration -> 1, why."""
    jobs = [i for i in items if i.get("kind") == "Job" and i.get("metadata", {}).get("name") == name]
    if not jobs:
        return -1, f"its kubernetes job {infrastructure_id} no longer exists"
    status = jobs[0].get("status") or {}
    if status.get("succeeded"):
        return 0, None
    if status.get("failed"):
        return 1, None
    for pod in (i for i in items if i.get("kind") == "Pod"):
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            waiting = (cs.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") in _POD_FAILURES:
                return 1, (f"its pod {pod['metadata']['name']} cannot start: {waiting['reason']}: "
                           f"{waiting.get('message', '')}".rstrip(": "))
    return None, None


def submitter(kind: str) -> Submitter:
    if kind == "docker":
        return Submitter("docker", "docker", "Install Docker and start its daemon, or run the worker where it is.",
                         "Check that the image exists and this machine can pull it (`docker pull IMAGE`, "
                         "`docker login REGISTRY`) and that the Docker daemon is running (`docker info`).")
    if kind == "kubernetes":
        return Submitter("kubernetes", "kubectl", "Install kubectl and point its context at your cluster.",
                         "Check kubectl's context (`kubectl config current-context`), that the namespace exists, "
                         "and that you may create Jobs there (`kubectl auth can-i create jobs -n NAMESPACE`).")
    raise ConfigurationError(f"pool type {kind!r} is not submitted as a container: use docker or kubernetes")
