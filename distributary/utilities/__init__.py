"""Helpers at Prefect's `prefect.utilities` paths."""
