"""How values become table cells and sentences: percentages, numbers, the
cover letter's spelling of its gains, input values; DASH for "none"."""

from __future__ import annotations

import json
import math
from typing import Any

DASH = "—"


def pct(value: float | None) -> str:
    if value is None:
        return DASH
    if math.isinf(value):
        return "+inf%" if value > 0 else "-inf%"
    return f"{value:+.1f}%"


def num(value: float | None, digits: int = 1) -> str:
    if value is None:
        return DASH
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.{digits}f}"


def stated(value: float | None) -> str:
    """A cover-letter percentage as printed there (+99.25%, +7%)."""
    return DASH if value is None else f"{value:+g}%"


def value_text(v: Any) -> str:
    """An input's value as one string: strings as they are, the rest as JSON."""
    return v if isinstance(v, str) else json.dumps(v, sort_keys=True)
