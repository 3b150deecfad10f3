"""Input validation, written once, for the public functions.

Every check raises ``ValueError`` or ``TypeError`` with one message shape:
``"<argument>: expected <what>; got <what came>"``. Nothing is clipped, dropped or
silently turned into NaN.

A public function opens with one or two whole-signature checks and then reads as the math:

- :func:`unpaired_batch` (``policy_logps, reference_logps, desirable``) and
  :func:`paired_batch` (DPO's four log-prob vectors) return the namespace and batch size;
- :func:`loss_weights` returns ``beta`` and the two weights as floats that the loss's dtype
  can hold (their products included);
- :mod:`minikto._token_checks` checks the (B,) prompts and (B, T) responses a policy scores.

The pieces they are made of (:func:`scalar`, :func:`integer`, :func:`seed`,
:func:`float_vector`, :func:`bool_vector`...) serve the other modules.
"""

from __future__ import annotations

import math
from types import ModuleType
from typing import Any

import numpy as np

from .backend import array_namespace

# ------------------------------------------------------------------------------------------
# Python numbers


def _describe(x: Any) -> str:
    shape = getattr(x, "shape", None)
    dtype = getattr(x, "dtype", None)
    if shape is not None:
        return f"an array of shape {tuple(shape)} and dtype {dtype}"
    return f"{type(x).__name__} {x!r}"


def _is_bool_or_complex(value: Any) -> bool:
    if isinstance(value, (bool, np.bool_, complex, np.complexfloating)):
        return True
    dtype = str(getattr(value, "dtype", ""))
    return dtype.startswith(("bool", "complex")) or ".bool" in dtype or ".complex" in dtype


def scalar(value: Any, name: str, *, positive: bool = False, nonnegative: bool = False) -> float:
    """Return ``value`` as a finite Python float, or raise naming ``name``.

    Booleans (``True``, ``np.bool_``) and complex numbers are refused rather than cast; so is
    an integer too large for a float.
    """
    if type(value) is not float and (_is_bool_or_complex(value) or not (
        isinstance(value, (int, float)) or hasattr(value, "__float__")
    )):
        raise TypeError(f"{name}: expected a real number; got {_describe(value)}")
    if getattr(value, "shape", ()) not in ((), None):
        raise TypeError(f"{name}: expected a real number; got {_describe(value)}")
    try:
        out = float(value)
    except OverflowError:
        digits = len(str(abs(int(value))))
        raise ValueError(
            f"{name}: expected a finite number; got an integer of {digits} digits, "
            "too large for a float"
        ) from None
    if not math.isfinite(out):
        raise ValueError(f"{name}: expected a finite number; got {out}")
    if positive and out <= 0:
        raise ValueError(f"{name}: expected a number > 0; got {out}")
    if nonnegative and out < 0:
        raise ValueError(f"{name}: expected a number >= 0; got {out}")
    return out


def integer(
    value: Any, name: str, *, minimum: int | None = None, what: str = "an int",
    wrong_type: type[Exception] = TypeError,
) -> int:
    """Return ``value`` as a Python int (``bool`` refused), at least ``minimum`` if given.

    A wrong type is a ``wrong_type`` (``TypeError`` unless a caller has always said
    ``ValueError``), a value below ``minimum`` a ``ValueError``; both say
    ``"<name>: expected <what>; got ..."``.
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise wrong_type(f"{name}: expected {what}; got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name}: expected {what}; got {value}")
    return int(value)


def positive_int(value: Any, name: str) -> int:
    """An int >= 1 (a size, a length, a count)."""
    return integer(value, name, minimum=1, what="a positive int")


def seed(value: Any, name: str = "seed") -> int | None:
    """A seed for ``np.random.default_rng``: None or an int >= 0."""
    if value is None:
        return None
    return integer(value, name, minimum=0, what="None or an int >= 0")


def finite_nonnegative(value: Any, name: str) -> float:
    """A finite real number >= 0 (``bool`` refused)."""
    if _is_bool_or_complex(value) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name}: expected a finite number >= 0; got {value!r}")
    if not np.isfinite(value) or value < 0:
        raise ValueError(f"{name}: expected a finite number >= 0; got {value!r}")
    return float(value)


def token_or_none(value: Any, name: str, vocab_size: int) -> int | None:
    """None or a token id in ``[0, vocab_size)`` (an end token)."""
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name}: expected an int or None; got {value!r}")
    if not 0 <= value < vocab_size:
        raise ValueError(f"{name}: expected an id in [0, {vocab_size}); got {value}")
    return int(value)


_FLOAT32_MAX, _FLOAT64_MAX = float(np.finfo(np.float32).max), float(np.finfo(np.float64).max)


def _largest(dtype: Any) -> float:
    """The largest finite value of a floating dtype (float32 or float64)."""
    return _FLOAT32_MAX if "float32" in str(dtype) else _FLOAT64_MAX


def loss_weights(
    beta: Any, desirable_weight: Any, undesirable_weight: Any, dtype: Any
) -> tuple[float, float, float]:
    """``beta > 0`` and the two weights ``>= 0`` of a KTO-style loss, checked for ``dtype``.

    Each value, and ``beta`` times each weight (the scale of a gradient), must be finite in
    ``dtype``: a float32 loss refuses ``beta = 1e39`` naming ``beta`` instead of returning
    NaN.
    """
    beta = scalar(beta, "beta", positive=True)
    weights = {
        "desirable_weight": scalar(desirable_weight, "desirable_weight", nonnegative=True),
        "undesirable_weight": scalar(undesirable_weight, "undesirable_weight", nonnegative=True),
    }
    largest = _largest(dtype)
    kind = "float32" if largest == _FLOAT32_MAX else "float64"
    if beta > largest:
        raise ValueError(f"beta: expected a number the loss's dtype {kind} holds; got {beta}")
    for name, value in weights.items():
        if value > largest or value * beta > largest:
            raise ValueError(
                f"{name}: expected a weight whose product with beta = {beta} the loss's dtype "
                f"{kind} holds (at most {largest:.3g}); got {value}"
            )
    return beta, weights["desirable_weight"], weights["undesirable_weight"]


def bounded_product(scale: float, x: Any, xp: ModuleType, knob: str) -> None:
    """Refuse a ``scale`` (the knob ``knob``) whose product with the array ``x`` would
    overflow ``x``'s dtype, before the product is taken (so no warning, no inf, no NaN)."""
    largest = float(xp.max(xp.abs(x)))
    limit = _largest(x.dtype)
    if scale * largest > limit:
        raise ValueError(
            f"{knob}: expected a value whose product with the log-ratios stays finite in "
            f"{str(x.dtype).rsplit('.', 1)[-1]} (at most {limit:.3g}); got {knob} = {scale} "
            f"times |log-ratio| up to {largest:.3g} (use a smaller {knob})"
        )


# ------------------------------------------------------------------------------------------
# Arrays of log-probabilities and labels


def refuse_masked(x: Any, name: str) -> None:
    if isinstance(x, np.ma.MaskedArray):
        raise TypeError(
            f"{name}: expected a plain array; got a masked array (masked entries would count "
            "in some sums and not in others): drop or fill them first, e.g. x.compressed()"
        )


def namespace_of(**arrays: Any) -> ModuleType:
    """The one array namespace of the named arrays; a non-array is a TypeError naming it.

    A 0-d ``z0`` may also be a Python number (skip it by passing None). Masked arrays are
    refused.
    """
    for name, x in arrays.items():
        if x is not None and not (hasattr(x, "shape") and hasattr(x, "dtype")):
            raise TypeError(f"{name}: expected an array (NumPy, CuPy, ...); got {_describe(x)}")
        refuse_masked(x, name)
    return array_namespace(*arrays.values())


def same_dtype(x: Any, name: str, dtype: Any, like: str) -> None:
    """Refuse ``x`` unless its dtype is ``dtype`` (the dtype of the argument ``like``)."""
    if x.dtype != dtype:
        want, got = (str(d).rsplit(".", 1)[-1] for d in (dtype, x.dtype))
        raise TypeError(f"{name}: expected dtype {want} like {like}; got {got}")


def float_vector(x: Any, name: str, xp: ModuleType, *, length: int | None = None) -> Any:
    """Check that ``x`` is a finite 1-d floating array of ``xp`` (of ``length`` if given)."""
    if not hasattr(x, "shape") or not hasattr(x, "dtype"):
        raise TypeError(f"{name}: expected a 1-d floating array; got {_describe(x)}")
    refuse_masked(x, name)
    if array_namespace(x) is not xp:
        raise TypeError(
            f"{name}: expected an array of the same library as the other arguments "
            f"({xp.__name__}); got {type(x).__module__}.{type(x).__name__}"
        )
    native = type(x) is np.ndarray  # a dtype test without the namespace's wrappers
    if not (x.dtype.kind == "f" if native else xp.isdtype(x.dtype, "real floating")):
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
    refuse_masked(x, name)
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


def float_vectors(first: str, arrays: dict[str, Any], xp: ModuleType) -> int:
    """Check finite 1-d float arrays of one length and of the dtype of ``arrays[first]``."""
    float_vector(arrays[first], first, xp)
    batch, dtype = arrays[first].shape[0], arrays[first].dtype
    for name, x in arrays.items():
        if name != first:
            float_vector(x, name, xp, length=batch)
            same_dtype(x, name, dtype, first)
    return batch


def unpaired_batch(
    policy_logps: Any, reference_logps: Any, desirable: Any, z0: Any = None
) -> tuple[Any, int]:
    """The namespace and size B of an unpaired batch (two (B,) log-prob vectors, (B,) labels).

    A ``z0`` given as an array must be of the same library (it is checked by
    :func:`zero_point`).
    """
    xp = namespace_of(
        policy_logps=policy_logps,
        reference_logps=reference_logps,
        desirable=desirable,
        z0=z0 if hasattr(z0, "shape") else None,
    )
    logps = {"policy_logps": policy_logps, "reference_logps": reference_logps}
    batch = float_vectors("policy_logps", logps, xp)
    bool_vector(desirable, "desirable", xp, length=batch)
    return xp, batch


def paired_batch(**logps: Any) -> tuple[Any, int]:
    """The namespace and size B of a paired batch: (B,) log-prob vectors of one dtype."""
    xp = namespace_of(**logps)
    return xp, float_vectors(next(iter(logps)), logps, xp)


def zero_point(z0: Any, xp: ModuleType, dtype: Any) -> Any:
    """The reference point as a finite 0-d array of ``xp`` and ``dtype``."""
    if not hasattr(z0, "shape"):
        return xp.asarray(scalar(z0, "z0"), dtype=dtype)
    refuse_masked(z0, "z0")
    if tuple(z0.shape) != ():
        raise ValueError(f"z0: expected a scalar or 0-d array; got shape {tuple(z0.shape)}")
    if array_namespace(z0) is not xp:
        raise TypeError(
            f"z0: expected an array of {xp.__name__} like policy_logps; "
            f"got {type(z0).__module__}.{type(z0).__name__}"
        )
    if not xp.isdtype(z0.dtype, ("real floating", "integral")):
        raise TypeError(f"z0: expected a real number; got {_describe(z0)}")
    if not bool(xp.isfinite(z0)):
        raise ValueError(f"z0: expected a finite number; got {float(z0)}")
    return xp.astype(z0, dtype)
