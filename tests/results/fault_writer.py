"""A test-only writer process for the fault tests: runs a flow whose cached task overwrites the key "poison"
(refresh_cache=True) and SIGKILLs itself at the moment the store is about to write the record, i.e. after the
new data is written and before the commit. Usage: fault_writer.py <store path> <marker byte> <nbytes>."""
from __future__ import annotations

import os
import signal
import sys

from distributary import flow, task
from distributary.results import resolve_store


def main(root: str, marker: int, nbytes: int) -> None:
    store = resolve_store(root)
    original = store._backend.write

    def write(path: str, data: bytes) -> None:
        if path.endswith(".meta.json"):
            os.kill(os.getpid(), signal.SIGKILL)  # the kill point: between the data write and the record write
        original(path, data)

    store._backend.write = write  # type: ignore[method-assign]

    @task(cache_key_fn=lambda *_: "poison", refresh_cache=True, result_storage=store, result_serializer="pickle")
    def make() -> bytes:
        return bytes([marker]) * nbytes

    @flow
    def overwrite() -> bytes:
        return make()

    overwrite()
    print("not killed", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
