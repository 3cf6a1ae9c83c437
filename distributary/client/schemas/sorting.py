"""Prefect's `prefect.client.schemas.sorting` path; the models live in `distributary.schemas.sorting`."""
from ...schemas.sorting import *  # noqa: F401,F403
