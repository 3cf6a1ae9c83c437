"""Seed example "Working with States" (only the import lines differ from Prefect's)."""
from distributary import flow, task
from distributary.states import Completed, Failed


@task
def validate_data(data: dict) -> bool:
    return "required_field" in data


@task
def process_data(data: dict) -> dict:
    return {"processed": True, **data}


@flow
def stateful_workflow(data: dict):
    is_valid = validate_data(data)

    if not is_valid:
        return Failed(message="Validation failed: missing required_field")

    result = process_data(data)
    return Completed(message="Data processed successfully", data=result)


@flow
def check_task_states():
    # Get state object instead of result
    state = validate_data({"required_field": "value"}, return_state=True)

    if state.is_completed():
        print(f"Task completed with result: {state.result()}")
    elif state.is_failed():
        print(f"Task failed: {state.message}")


if __name__ == "__main__":
    result = stateful_workflow({"required_field": "test"})
    print(f"Flow result: {result}")
