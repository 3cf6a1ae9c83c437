"""`ResultRef`: a small, picklable pointer to a persisted result, loadable in any process that can reach the store."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigurationError
from .records import META_SUFFIX, shard


@dataclass(frozen=True)
class ResultRef:
    """Where a result lives: the store URL, the key, and the store's non-secret storage options (credentials
    come from the loading process's environment). A ResultRef passed as a task argument is replaced by its value.

    >>> from distributary.results import resolve_store
    >>> ref = resolve_store("memory://refs-doc").write("k", [1, 2], "json")
    >>> ref.url, ref.load()
    ('memory:///refs-doc/k', [1, 2])
    """

    store_url: str
    key: str
    storage_options: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def url(self) -> str:
        """The result's logical URL, `<store URL>/<key>` (the same in every store format; `load()` takes it)."""
        return f"{self.store_url}/{self.key}"

    @property
    def record_url(self) -> str:
        """The URL of the result's record (format 2 layout: `<store URL>/<shard>/<key>.meta.json`)."""
        return f"{self.store_url}/{shard(self.key)}/{self.key}{META_SUFFIX}"

    def store(self) -> Any:
        from .store import store_for_ref

        return store_for_ref(self.store_url, self.storage_options)

    def load(self) -> Any:
        """The value (raises `MissingResult` if it is gone, `ResultStoreError` if the store cannot be read)."""
        return self.store().load(self.key)

    def __repr__(self) -> str:
        return f"ResultRef({self.url!r})"


def load(ref_or_url: "ResultRef | str", storage_options: dict[str, Any] | None = None) -> Any:
    """Load a result from a `ResultRef`, or from a URL: its logical URL `<store URL>/<key>` (`ResultRef.url`,
    the same in every store format) or the URL of its `.meta.json` record in either layout.

    The store is taken to be the folder holding the key (less the two shard folders of a format 2 record URL);
    for keys with "/" in them pass the ResultRef instead.
    """
    if isinstance(ref_or_url, ResultRef):
        return ref_or_url.load()
    if not isinstance(ref_or_url, str):
        raise ConfigurationError(f"load() takes a ResultRef or a URL, not {ref_or_url!r}.")
    url = ref_or_url[: -len(META_SUFFIX)] if ref_or_url.endswith(META_SUFFIX) else ref_or_url
    store_url, sep, key = url.rstrip("/").rpartition("/")
    if not sep or not key:
        raise ConfigurationError(f"{ref_or_url!r} is not the URL of a result (expected <store URL>/<key>).")
    if ref_or_url.endswith(META_SUFFIX) and store_url.endswith("/" + shard(key)):
        store_url = store_url[: -len(shard(key)) - 1]  # a format 2 record: <store>/<ab>/<cd>/<key>.meta.json
    return ResultRef(store_url or "/", key, dict(storage_options or {})).load()
