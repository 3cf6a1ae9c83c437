"""Seed example "State Change Hooks" (only the import lines differ from Prefect's)."""
from distributary import flow, task
from distributary.states import State


def on_task_failure(task, task_run, state: State):
    print(f"Task {task.name} failed with message: {state.message}")
    # Send alert, log to external system, etc.


def on_task_success(task, task_run, state: State):
    print(f"Task {task.name} completed successfully")


def on_flow_completion(flow, flow_run, state: State):
    print(f"Flow {flow.name} finished with state: {state.name}")


@task(on_failure=[on_task_failure], on_completion=[on_task_success])
def risky_task(should_fail: bool = False):
    if should_fail:
        raise ValueError("Intentional failure")
    return "success"


@flow(on_completion=[on_flow_completion])
def monitored_workflow():
    risky_task(should_fail=False)
    risky_task(should_fail=True)


if __name__ == "__main__":
    monitored_workflow()
