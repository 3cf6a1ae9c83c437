"""Argument annotations at Prefect's path (`prefect.utilities.annotations`): `unmapped`, `allow_failure`,
`quote`, and `opaque` (resolve a future passed whole, but never walk into its value: for large results)."""
from __future__ import annotations

from ..engine.resolve import BaseAnnotation, allow_failure, opaque, quote, unmapped

__all__ = ["BaseAnnotation", "unmapped", "allow_failure", "quote", "opaque"]
