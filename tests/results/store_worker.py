"""A separate process for the store tests: loads a pickled ResultRef, holds a lease, or writes a large result
(to be killed mid-write). Stores are opened from their URL alone, so credentials and endpoints come from the
environment, as in a worker process."""
from __future__ import annotations

import json
import os
import pickle
import sys
import time


def main(mode: str, *args: str) -> None:
    from distributary.errors import MissingResult
    from distributary.results import load, resolve_store

    if mode == "load":
        with open(args[0], "rb") as f:
            ref = pickle.load(f)
        try:
            print(json.dumps({"value": load(ref)}))
        except MissingResult as exc:
            print(json.dumps({"missing": str(exc)}))
    elif mode == "lease":
        url, key, log_path, hold = args
        store = resolve_store(url)
        with store.lease(key, ttl=5, timeout=60):
            _log(log_path, "enter")
            time.sleep(float(hold))
            _log(log_path, "exit")
    elif mode == "hold":  # take the lease with a long ttl, say so, then hang until killed
        url, key = args
        store = resolve_store(url)
        with store.lease(key, ttl=120, timeout=60):
            print("holding", flush=True)
            time.sleep(600)
    elif mode == "write-big":
        url, key, nbytes = args
        value = os.urandom(1024) * (int(nbytes) // 1024)
        print("writing", flush=True)
        resolve_store(url).write(key, value, "pickle")
        print("done", flush=True)
    else:
        raise SystemExit(f"unknown mode {mode!r}")


def _log(path: str, event: str) -> None:
    line = f"{os.getpid()} {event} {time.time():.6f}\n".encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


if __name__ == "__main__":
    main(*sys.argv[1:])
