"""Faults with real processes: a writer killed between the data and the record of an overwrite never poisons the
key, and damaged data is a cache miss (with a warning naming the key) that is recomputed, never served."""
from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

from distributary import flow, task
from distributary.results import resolve_store

WRITER = Path(__file__).with_name("fault_writer.py")
calls: list[int] = []


def _cached_run(root: Path, nbytes: int) -> tuple[str, bytes]:
    @task(cache_key_fn=lambda *_: "poison", result_storage=str(root), result_serializer="pickle")
    def make() -> bytes:
        calls.append(1)
        return b"\x07" * nbytes

    out = []

    @flow
    def run() -> None:
        out.append(make(return_state=True))

    run()
    state = out[0]
    return state.name, state.result(raise_on_failure=False)


def test_killed_overwrites_never_poison_the_key(tmp_path: Path) -> None:
    root = tmp_path / "store"
    calls.clear()
    assert _cached_run(root, 500) == ("Completed", b"\x07" * 500)
    failed = 0
    for i in range(8):
        nbytes = 300_000 if i % 2 else 300  # an inline result and one in its own data object, in turn
        proc = subprocess.run([sys.executable, str(WRITER), str(root), str(i + 1), str(nbytes)],
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == -9 and "not killed" not in proc.stdout, proc.stderr
        name, value = _cached_run(root, 500)
        failed += name != "Cached"
        assert (name, value) == ("Cached", b"\x07" * 500), f"kill {i}: {name} {value!r:.80}"
    assert failed == 0 and calls == [1]  # every later run was a hit on the last committed value
    store = resolve_store(str(root))
    record = store.read_record("poison")
    assert store.load("poison") == b"\x07" * 500 and record.inline is not None
    leftovers = [p for p in root.rglob("poison.*.data")]  # the killed writers' uncommitted data objects
    assert len(leftovers) == 4


def test_damaged_data_is_a_miss_with_a_warning_then_recomputed(tmp_path: Path, caplog) -> None:
    root = tmp_path / "store"
    calls.clear()
    big = 4 * 2**20
    assert _cached_run(root, big)[0] == "Completed"
    store = resolve_store(str(root))
    path = Path(store.data_path(store.read_record("poison")))
    damaged = bytearray(path.read_bytes())
    damaged[len(damaged) // 3 + 12_345] ^= 0x10  # one bit, away from where the old checksum sampled
    path.write_bytes(bytes(damaged))
    with caplog.at_level(logging.WARNING, logger="distributary.results"):
        name, value = _cached_run(root, big)
    assert name == "Completed" and value == b"\x07" * big and calls == [1, 1]  # recomputed, not served
    assert any("'poison'" in r.getMessage() and "does not match its record" in r.getMessage()
               for r in caplog.records), [r.getMessage() for r in caplog.records]
    assert _cached_run(root, big) == ("Cached", b"\x07" * big) and calls == [1, 1]  # overwritten: a hit again
    assert not path.exists()  # the damaged object was superseded and deleted
