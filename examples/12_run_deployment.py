"""Seed example "Running Deployments Programmatically" (only the import line differs from Prefect's)."""
from distributary.deployments import run_deployment

# Trigger a deployment run
flow_run = run_deployment(
    name="my-flow/my-deployment",
    parameters={"param1": "value1"},
    timeout=0,  # Don't wait for completion
)
print(f"Started flow run: {flow_run.id}")

# Trigger and wait for completion
flow_run = run_deployment(
    name="my-flow/my-deployment",
    parameters={"param1": "value1"},
    timeout=300,  # Wait up to 5 minutes
)
print(f"Flow run completed with state: {flow_run.state}")
