"""Seed example "Handling Failures in Concurrent Work" (only the import lines differ from Prefect's)."""
from typing import Any

from distributary import flow, task
from distributary.futures import wait
from distributary.states import State


@task
def process_record(record_id: int) -> dict:
    if record_id % 3 == 0:
        raise ValueError(f"Cannot process record {record_id}")
    return {"id": record_id, "status": "processed"}


@flow
def resilient_batch_processing():
    record_ids = list(range(1, 11))

    # Submit all tasks
    futures = process_record.map(record_ids)

    # Wait for all to complete (success or failure)
    done, not_done = wait(futures)

    # Separate successful and failed results
    successful: list[Any] = []
    failed: list[State] = []

    for future in done:
        if future.state.is_completed():
            successful.append(future.result())
        else:
            failed.append(future.state)

    print(f"✓ Processed: {len(successful)} records")
    print(f"✗ Failed: {len(failed)} records")

    # Continue with successful results
    return successful


if __name__ == "__main__":
    results = resilient_batch_processing()
    print(f"Final results: {results}")
