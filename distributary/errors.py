"""Every exception distributary raises. One root, and each class also inherits the builtin it refines."""
from __future__ import annotations


class DistributaryError(Exception):
    """Root of all distributary errors."""


class ConfigurationError(DistributaryError, ValueError):
    """A setting, option or argument has a value that cannot work."""


class MissingDependencyError(DistributaryError, ImportError):
    """An optional dependency is not installed; the message names the extra to install."""

    def __init__(self, what: str, extra: str, exc: BaseException | None = None):
        hint = f'pip install "distributary[{extra}]"'
        super().__init__(f"{what} needs the optional dependency that `{hint}` installs.")
        self.extra = extra
        self.install_hint = hint


class UnknownNameError(DistributaryError, KeyError, ValueError):
    """A name looked up in a registry (runner, serializer, ...) is not registered."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class ParameterTypeError(DistributaryError, TypeError):
    """A flow parameter failed validation against the function's type hints."""


class MappingLengthMismatch(DistributaryError, ValueError):
    """Iterables passed to `.map()` have different lengths."""


class MappingMissingIterable(DistributaryError, TypeError):
    """`.map()` was called with nothing to map over, or over a non-iterable."""


class SerializationError(DistributaryError, TypeError):
    """A value could not be serialized or sent to a worker."""


class UnfinishedRun(DistributaryError, RuntimeError):
    """The result of a run that has not completed was requested."""


class UpstreamTaskError(UnfinishedRun):
    """A task run did not start because a task run it depends on did not complete."""


class FailedRun(DistributaryError, RuntimeError):
    """A run ended in a failed state without an exception of its own (e.g. a returned `Failed(...)`)."""


class CrashedRun(DistributaryError, RuntimeError):
    """A run was interrupted by something outside the user's code (a dead worker, an interrupt)."""


class CancelledRun(DistributaryError, RuntimeError):
    """A run was cancelled."""


class TaskRunTimeoutError(DistributaryError, TimeoutError):
    """A task run exceeded its `timeout_seconds`."""


class FlowRunTimeoutError(DistributaryError, TimeoutError):
    """A flow run exceeded its `timeout_seconds`."""


class ResultStoreError(DistributaryError, OSError):
    """The result store could not be reached, read or written. The message names the URL."""


class MissingResult(DistributaryError, LookupError):
    """A persisted result does not exist (any more) at the place a reference points to."""


class CorruptResult(ResultStoreError):
    """A persisted result's data does not match its record (size or checksum): it is damaged or incomplete.
    A cache lookup treats it as a miss (with a warning) and recomputes; a direct load raises it."""


class CacheKeyError(DistributaryError, TypeError):
    """A cache key could not be computed from a task's inputs."""


class LockTimeoutError(DistributaryError, TimeoutError):
    """A cache-key lock could not be acquired in time."""


class ClusterConnectionError(DistributaryError, ConnectionError):
    """A task runner could not reach or start its cluster. The message names the address."""


class WorkerCrashedError(CrashedRun):
    """The worker process running a task died."""


class RunStoreError(DistributaryError, RuntimeError):
    """The run store (the database of flow runs, task runs, logs, artifacts, variables) cannot be used."""


class RunStoreRevisionError(RunStoreError):
    """The database was written by a newer distributary (its schema revision is unknown to this one)."""


class ObjectNotFound(DistributaryError, LookupError):
    """A run, flow, artifact or variable asked for by id or name does not exist in the run store."""


class ArtifactError(DistributaryError, ValueError):
    """An artifact's content is not of the form its kind needs (e.g. a table that is not a table)."""


class ConcurrencySlotAcquisitionError(DistributaryError, RuntimeError):
    """Concurrency slots could not be taken: a limit that does not exist (with `strict=True`), more slots than
    the limit, a rate limit without decay, or the run store refused."""


class AcquireConcurrencySlotTimeoutError(DistributaryError, TimeoutError):
    """No concurrency slot came free within `timeout_seconds`."""
