"""A user's value in an error message, in at most ~200 characters.

An error names what came (``"beta: expected a number > 0; got -1"``), but what came can be
anything a file or a flag holds: a megabyte string, a list that YAML aliases expand to a
billion items, a 5000-digit integer (whose ``str`` Python refuses). :func:`brief` is the one
place such a value is turned into text: :mod:`reprlib` bounds the nesting and the items shown
at each level (so the cost does not grow with the value), and the result is cut to ``limit``
characters with ``...``.
"""

from __future__ import annotations

import math
import reprlib
from typing import Any

__all__ = ["LIMIT", "brief"]

#: The most characters a value takes in an error message.
LIMIT = 200

_REPR = reprlib.Repr()
_REPR.maxlevel = 3
_REPR.maxdict = _REPR.maxlist = _REPR.maxtuple = _REPR.maxset = _REPR.maxfrozenset = 6
_REPR.maxstring = _REPR.maxother = LIMIT
_REPR.maxlong = 40


def brief(value: Any, limit: int = LIMIT) -> str:
    """``repr(value)``, bounded: at most ``limit`` characters, computed in bounded time."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 128:
        digits = int(value.bit_length() * math.log10(2)) + 1
        return f"an integer of about {digits} digits"
    try:
        text = _REPR.repr(value)
    except Exception:  # a repr that fails: say what it is  # noqa: BLE001
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."
