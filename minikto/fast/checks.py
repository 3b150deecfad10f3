"""Quick answers to the questions the input checks ask of an array (optional reading).

:mod:`minikto._checks` and :mod:`minikto._token_checks` ask of every argument the kind of its
dtype and the range of its values. Through the array namespace each answer costs a few
microseconds (``xp.isdtype``, ``xp.min``); a public function called on a small batch asks a
dozen of them, which is a fair share of its time. NumPy answers from the dtype's kind letter
and the array's own methods instead; every other namespace takes the standard's functions.
``tests/test_fast_paths.py`` checks that both give the same answers.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import backend

__all__ = ["dtype_kind", "integer_range"]

_KINDS = {"i": "integral", "u": "integral", "f": "real floating", "b": "bool"}


def dtype_kind(x: Any) -> str:
    """``"integral"``, ``"real floating"``, ``"bool"`` or ``"other"``: the kind of x's dtype."""
    if type(x) is np.ndarray:
        return _KINDS.get(x.dtype.kind, "other")
    xp = backend.array_namespace(x)
    for kind in ("integral", "real floating", "bool"):
        if xp.isdtype(x.dtype, kind):
            return kind
    return "other"


def integer_range(ids: Any) -> tuple[int, int]:
    """``(min(ids), max(ids))`` of a non-empty integer array, as Python ints."""
    if type(ids) is np.ndarray:
        return int(ids.min()), int(ids.max())
    xp = backend.array_namespace(ids)
    return int(xp.min(ids)), int(xp.max(ids))
