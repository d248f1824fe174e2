"""Slugs: the identifiers of parks, gateways, enterprises and meters on topics and in tags."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import StringConstraints

SLUG_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"
_SLUG_RE = re.compile(SLUG_PATTERN)

Slug = Annotated[str, StringConstraints(pattern=SLUG_PATTERN)]


def is_slug(value: object) -> bool:
    return isinstance(value, str) and _SLUG_RE.fullmatch(value) is not None
