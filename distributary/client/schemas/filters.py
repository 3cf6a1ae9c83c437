"""Prefect's `prefect.client.schemas.filters` path; the models live in `distributary.schemas.filters`."""
from ...schemas.filters import *  # noqa: F401,F403
