"""Seed example "Creating Deployments with Serve" (only the import line differs from Prefect's)."""
from distributary import flow


@flow(log_prints=True)
def daily_etl():
    print("Running daily ETL pipeline...")
    # ETL logic here
    return {"records_processed": 1000}


if __name__ == "__main__":
    # Create deployment and start serving
    daily_etl.serve(
        name="daily-etl-deployment",
        cron="0 6 * * *",  # Run daily at 6 AM
        parameters={"source": "production"},
        tags=["etl", "production"]
    )
