"""Storage options for fsspec backends: which protocol a URL names, what to install for it, which options come
from the environment, and which options are secrets that must not travel inside a `ResultRef`.

Credentials come from the environment the way each backend normally reads them, in the process that opens the
store (so a worker uses its own environment):

- s3 (s3fs/botocore): AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_PROFILE, AWS_REGION,
  AWS_MAX_ATTEMPTS, and AWS_ENDPOINT_URL / AWS_ENDPOINT_URL_S3 (botocore >= 1.31 reads these itself; for older
  botocore `storage_options_from_env` copies them into `client_kwargs["endpoint_url"]`).
- gs (gcsfs): STORAGE_EMULATOR_HOST, GOOGLE_APPLICATION_CREDENTIALS, GOOGLE_CLOUD_PROJECT (copied to `project`).
- az / abfs (adlfs): AZURE_STORAGE_CONNECTION_STRING, AZURE_STORAGE_ACCOUNT_NAME, AZURE_STORAGE_ACCOUNT_KEY,
  AZURE_STORAGE_SAS_TOKEN, AZURE_STORAGE_CLIENT_ID/_SECRET, AZURE_STORAGE_TENANT_ID (adlfs reads these itself).

Options passed explicitly always win over the environment.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from .._registry import Registry

# protocol -> (canonical protocol, distributary extra, package)
PROTOCOLS: dict[str, tuple[str, str | None, str | None]] = {
    "file": ("file", None, None),
    "local": ("file", None, None),
    "memory": ("memory", None, None),
    "s3": ("s3", "s3", "s3fs"),
    "s3a": ("s3", "s3", "s3fs"),
    "gs": ("gs", "gcs", "gcsfs"),
    "gcs": ("gs", "gcs", "gcsfs"),
    "az": ("abfs", "azure", "adlfs"),
    "abfs": ("abfs", "azure", "adlfs"),
    "abfss": ("abfs", "azure", "adlfs"),
}

ENTRY_POINT_GROUP = "distributary.storage_protocols"  # name = "package.module:INFO", INFO as in PROTOCOLS
_protocols: Registry[tuple[str, str | None, str | None]] = Registry("storage protocol", ENTRY_POINT_GROUP)
for _name, _info in PROTOCOLS.items():
    _protocols.register(_name, _info)


def register_protocol(name: str, canonical: str | None = None, extra: str | None = None,
                      package: str | None = None) -> None:
    """Declare a storage protocol: its canonical name, the distributary extra and the package that provide it."""
    _protocols.register(name, (canonical or name, extra, package))


def _protocol_info(protocol: str) -> tuple[str, str | None, str | None]:
    if protocol in _protocols:
        return _protocols.get(protocol)
    return (protocol, None, None)  # any other fsspec protocol, used as it is


_SECRET_WORDS = ("secret", "password", "token", "credential", "connection_string", "sas", "private")
_SECRET_NAMES = {"key", "account_key", "access_key", "aws_access_key_id", "sas_token"}
_PUBLIC_TOKENS = {"anon", "google_default", "cloud", "browser"}


def canonical_protocol(protocol: str) -> str:
    """"s3a" -> "s3", "gcs" -> "gs", "az"/"abfss" -> "abfs"; other protocols unchanged."""
    return _protocol_info(protocol)[0]


def install_hint(protocol: str) -> tuple[str | None, str | None]:
    """(distributary extra, package) that provide `protocol`, or (None, None) when unknown."""
    _, extra, package = _protocol_info(protocol)
    return extra, package


def storage_options_from_env(protocol: str) -> dict[str, Any]:
    """The options the environment implies for `protocol` that the backend would not pick up by itself."""
    protocol = canonical_protocol(protocol)
    options: dict[str, Any] = {}
    if protocol == "s3":
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        if endpoint and not _botocore_reads_endpoint_env():
            options["client_kwargs"] = {"endpoint_url": endpoint}
    elif protocol == "gs":
        project = os.environ.get("GOOGLE_CLOUD_PROJECT")
        if project:
            options["project"] = project
    return options


def effective_storage_options(protocol: str, explicit: Mapping[str, Any] | None) -> dict[str, Any]:
    """The environment's options for `protocol`, overridden by the `explicit` ones (dicts merged one level)."""
    merged = storage_options_from_env(protocol)
    for name, value in (explicit or {}).items():
        if isinstance(value, Mapping) and isinstance(merged.get(name), Mapping):
            merged[name] = {**merged[name], **value}
        else:
            merged[name] = value
    return merged


def public_storage_options(options: Mapping[str, Any] | None) -> dict[str, Any]:
    """`options` without secrets (keys, tokens, passwords, connection strings), for a `ResultRef` that may be
    logged or stored: the process that loads it takes its credentials from its own environment."""
    public: dict[str, Any] = {}
    for name, value in (options or {}).items():
        if _is_secret(name, value):
            continue
        public[name] = public_storage_options(value) if isinstance(value, Mapping) else value
    return public


def _is_secret(name: str, value: Any) -> bool:
    lowered = name.lower()
    if lowered == "token":
        return not (value is None or value is False or value in _PUBLIC_TOKENS)
    return lowered in _SECRET_NAMES or any(word in lowered for word in _SECRET_WORDS)


def _botocore_reads_endpoint_env() -> bool:
    try:
        import botocore
    except ImportError:
        return False
    major, minor, *_ = (int(p) if p.isdigit() else 0 for p in botocore.__version__.split("."))
    return (major, minor) >= (1, 31)
