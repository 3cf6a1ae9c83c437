"""Persisted results: a `ResultStore` over any fsspec URL, `ResultRecord` metadata, leases and `ResultRef`s.

    from distributary.results import resolve_store, load
    store = resolve_store("s3://bucket/results")          # or a path, gs://, az://, memory://
    ref = store.write("key", value, "cloudpickle")
    load(ref) == value                                    # in any process that can reach the bucket

Importing this package imports fsspec only; s3fs, gcsfs and adlfs are imported when a store needs them.
"""
from __future__ import annotations

from .records import ResultRecord
from .refs import ResultRef, load
from .store import ResultStore, resolve_store

__all__ = ["ResultStore", "ResultRecord", "ResultRef", "resolve_store", "load"]
