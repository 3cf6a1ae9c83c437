"""Prefect's module path for exceptions (`distributary.exceptions`); everything lives in `distributary.errors`."""
from .errors import *  # noqa: F401,F403
from .errors import DistributaryError as PrefectException  # noqa: F401
