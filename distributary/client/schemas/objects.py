"""Prefect's `prefect.client.schemas.objects` path; the models live in `distributary.schemas.objects`."""
from ...schemas.objects import *  # noqa: F401,F403
