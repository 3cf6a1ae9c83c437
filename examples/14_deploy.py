"""Seed example "Creating Deployments with Work Pools". Two changes from Prefect's: the import line, and
`build=False` (no Docker engine runs here to build the image; the image is taken as prebuilt)."""
from distributary import flow
from distributary.client.schemas.objects import ConcurrencyLimitConfig


@flow
def ml_training_pipeline(dataset: str, epochs: int = 10):
    print(f"Training model on {dataset} for {epochs} epochs")
    return {"accuracy": 0.95}


if __name__ == "__main__":
    ml_training_pipeline.deploy(
        name="ml-training",
        work_pool_name="kubernetes-pool",
        image="my-registry/ml-training:latest",
        build=False,
        push=False,
        cron="0 0 * * 0",  # Weekly on Sunday
        parameters={"dataset": "training_data_v2", "epochs": 50},
        tags=["ml", "training"],
        concurrency_limit=ConcurrencyLimitConfig(limit=3),
        job_variables={
            "cpu": "4",
            "memory": "16Gi",
            "env": {"MODEL_VERSION": "v2"}
        }
    )
