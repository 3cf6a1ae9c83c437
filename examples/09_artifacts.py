"""Seed example "Creating Artifacts" (only the import lines differ from Prefect's)."""
import time

from distributary import flow, task
from distributary.artifacts import (
    create_link_artifact,
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)


@task
def generate_report():
    markdown_report = """# Daily Report

## Summary
Processing completed successfully.

## Statistics
| Metric | Value |
|--------|-------|
| Records Processed | 1,000 |
| Success Rate | 99.5% |
| Duration | 45s |
"""
    create_markdown_artifact(
        key="daily-report",
        markdown=markdown_report,
        description="Daily processing report"
    )


@task
def track_customers():
    customers = [
        {"id": "001", "name": "Acme Corp", "status": "Active"},
        {"id": "002", "name": "TechStart", "status": "Pending"},
    ]
    create_table_artifact(
        key="customer-list",
        table=customers,
        description="Current customer status"
    )


@task
def save_output_link():
    create_link_artifact(
        key="output-data",
        link="https://storage.example.com/output.csv",
        link_text="Download Output",
        description="Link to processed data"
    )


@task
def batch_process_with_progress():
    progress_id = create_progress_artifact(
        progress=0.0,
        description="Batch processing progress"
    )
    for i in range(1, 11):
        time.sleep(0.5)  # Simulate work
        update_progress_artifact(artifact_id=progress_id, progress=i * 10)
    return "Processing complete"


@flow
def artifact_workflow():
    generate_report()
    track_customers()
    save_output_link()
    batch_process_with_progress()


if __name__ == "__main__":
    artifact_workflow()
