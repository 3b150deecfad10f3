"""Input validation shared by the public functions.

Every check raises ``ValueError`` or ``TypeError`` with one message shape:
``"<argument>: expected <what>; got <what came>"``. Nothing is clipped, dropped or
silently turned into NaN.
"""

from __future__ import annotations

import math
from types import ModuleType
from typing import Any

from .backend import array_namespace


def _describe(x: Any) -> str:
    shape = getattr(x, "shape", None)
    dtype = getattr(x, "dtype", None)
    if shape is not None:
        return f"an array of shape {tuple(shape)} and dtype {dtype}"
    return f"{type(x).__name__} {x!r}"


def namespace_of(**arrays: Any) -> ModuleType:
    """The one array namespace of the named arrays; a non-array is a TypeError naming it.

    A 0-d ``z0`` may also be a Python number (skip it by passing None).
    """
    for name, x in arrays.items():
        if x is not None and not (hasattr(x, "shape") and hasattr(x, "dtype")):
            raise TypeError(f"{name}: expected an array (NumPy, CuPy, ...); got {_describe(x)}")
    return array_namespace(*arrays.values())


def same_dtype(x: Any, name: str, dtype: Any, like: str) -> None:
    """Refuse ``x`` unless its dtype is ``dtype`` (the dtype of the argument ``like``)."""
    if x.dtype != dtype:
        want, got = (str(d).rsplit(".", 1)[-1] for d in (dtype, x.dtype))
        raise TypeError(f"{name}: expected dtype {want} like {like}; got {got}")


def scalar(value: Any, name: str, *, positive: bool = False, nonnegative: bool = False) -> float:
    """Return ``value`` as a finite Python float, or raise naming ``name``."""
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        and not hasattr(value, "__float__")
    ):
        raise TypeError(f"{name}: expected a real number; got {_describe(value)}")
    if getattr(value, "shape", ()) not in ((), None):
        raise TypeError(f"{name}: expected a real number; got {_describe(value)}")
    out = float(value)
    if not math.isfinite(out):
        raise ValueError(f"{name}: expected a finite number; got {out}")
    if positive and out <= 0:
        raise ValueError(f"{name}: expected a number > 0; got {out}")
    if nonnegative and out < 0:
        raise ValueError(f"{name}: expected a number >= 0; got {out}")
    return out


def float_vector(x: Any, name: str, xp: ModuleType, *, length: int | None = None) -> Any:
    """Check that ``x`` is a finite 1-d floating array of ``xp`` (of ``length`` if given)."""
    if not hasattr(x, "shape") or not hasattr(x, "dtype"):
        raise TypeError(f"{name}: expected a 1-d floating array; got {_describe(x)}")
    if array_namespace(x) is not xp:
        raise TypeError(
            f"{name}: expected an array of the same library as the other arguments "
            f"({xp.__name__}); got {type(x).__module__}.{type(x).__name__}"
        )
    if not xp.isdtype(x.dtype, "real floating"):
        raise TypeError(f"{name}: expected a floating dtype (float32/float64); got {x.dtype}")
    if x.ndim != 1:
        raise ValueError(f"{name}: expected shape (B,); got shape {tuple(x.shape)}")
    if length is not None and x.shape[0] != length:
        raise ValueError(f"{name}: expected shape ({length},) to match; got {tuple(x.shape)}")
    if x.shape[0] == 0:
        raise ValueError(f"{name}: expected a non-empty batch; got shape {tuple(x.shape)}")
    if not bool(xp.all(xp.isfinite(x))):
        bad = int(xp.sum(xp.astype(~xp.isfinite(x), xp.int64)))
        raise ValueError(f"{name}: expected finite values; got {bad} NaN or infinite entries")
    return x


def bool_vector(x: Any, name: str, xp: ModuleType, *, length: int) -> Any:
    """Check that ``x`` is a boolean array of shape (length,) of ``xp``."""
    if not hasattr(x, "dtype"):
        raise TypeError(
            f"{name}: expected a boolean array of shape ({length},); got {_describe(x)}"
        )
    if array_namespace(x) is not xp:
        raise TypeError(
            f"{name}: expected an array of the same library as the other arguments "
            f"({xp.__name__}); got {type(x).__module__}.{type(x).__name__}"
        )
    if x.dtype != xp.bool:
        raise TypeError(f"{name}: expected a boolean array (True = desirable); got dtype {x.dtype}")
    if tuple(x.shape) != (length,):
        raise ValueError(f"{name}: expected shape ({length},); got shape {tuple(x.shape)}")
    return x
