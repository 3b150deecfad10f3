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
:func:`float_vector`, :func:`bool_vector`...) serve the other modules, and each rule is
written once: :func:`same_library`, :func:`same_dtype`, :func:`same_response_space` (a policy
against a policy or a task), :func:`at_least_two_examples`. The namespace itself is resolved
by :func:`minikto.backend.array_namespace`, which names an argument that is not an array.
"""

from __future__ import annotations

import math
from types import ModuleType
from typing import Any

import numpy as np

from ._brief import brief
from .backend import array_namespace, dtype_name, refuse_masked, to_numpy
from .backend import describe as _describe
from .fast.checks import dtype_kind

# ------------------------------------------------------------------------------------------
# Python numbers


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

    A wrong type raises ``wrong_type`` (``TypeError`` by default; :mod:`minikto.exact` raises
    ``ValueError``), a value below ``minimum`` a ``ValueError``; both say
    ``"<name>: expected <what>; got ..."``.
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise wrong_type(f"{name}: expected {what}; got {brief(value)}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name}: expected {what}; got {brief(value)}")
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
        raise TypeError(f"{name}: expected a finite number >= 0; got {brief(value)}")
    if not np.isfinite(value) or value < 0:
        raise ValueError(f"{name}: expected a finite number >= 0; got {brief(value)}")
    return float(value)


def token_or_none(value: Any, name: str, vocab_size: int) -> int | None:
    """None or a token id in ``[0, vocab_size)`` (an end token)."""
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name}: expected an int or None; got {brief(value)}")
    if not 0 <= value < vocab_size:
        raise ValueError(f"{name}: expected an id in [0, {vocab_size}); got {brief(value)}")
    return int(value)


def same_response_space(value: Any, name: str, like: Any, owner: str) -> None:
    """Refuse a policy ``value`` unless its vocabulary, prompts and end token are those of
    ``like`` (a policy or a task), named ``owner`` ("the task's", "policy's").

    A log-ratio of two policies over different response spaces compares different
    distributions; a policy of another task scores responses the task cannot make.
    """
    for attr in ("vocab_size", "num_prompts", "eos_token"):
        want, got = getattr(like, attr), getattr(value, attr, None)
        if want != got:
            raise ValueError(f"{name}: expected {owner} {attr}, {want}; got {got}")


def at_least_two_examples(count: int, name: str, *, where: str = "", detail: str = "") -> None:
    """Refuse fewer than 2 examples: the batch estimate of z0 pairs each prompt with ANOTHER
    example's response. ``where`` (" per batch") and ``detail`` complete the message."""
    if count < 2:
        raise ValueError(f"{name}: expected at least 2 examples{where}; got {count}{detail}")


_FLOAT32_MAX, _FLOAT64_MAX = float(np.finfo(np.float32).max), float(np.finfo(np.float64).max)


def _largest(dtype: Any) -> float:
    """The largest finite value of a floating dtype (float32 or float64)."""
    return _FLOAT32_MAX if dtype_name(dtype) == "float32" else _FLOAT64_MAX


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
    kind = dtype_name(dtype)
    largest = _FLOAT32_MAX if kind == "float32" else _FLOAT64_MAX
    if beta > largest:
        raise ValueError(f"beta: expected a number the loss's dtype {kind} holds; got {beta}")
    for name, value in weights.items():
        if value > largest or value * beta > largest:
            raise ValueError(
                f"{name}: expected a weight whose product with beta = {beta} the loss's dtype "
                f"{kind} holds (at most {largest:.3g}); got {brief(value)}"
            )
    return beta, weights["desirable_weight"], weights["undesirable_weight"]


def bounded_product(scale: float, x: Any, xp: ModuleType, name: str) -> None:
    """Refuse a ``scale`` (the argument ``name``) whose product with the array ``x`` would
    overflow ``x``'s dtype, before the product is taken (so no warning, no inf, no NaN)."""
    largest = float(xp.max(xp.abs(x)))
    limit = _largest(x.dtype)
    if scale * largest > limit:
        raise ValueError(
            f"{name}: expected a value whose product with the log-ratios stays finite in "
            f"{dtype_name(x.dtype)} (at most {limit:.3g}); got {name} = {scale} "
            f"times |log-ratio| up to {largest:.3g} (use a smaller {name})"
        )


# ------------------------------------------------------------------------------------------
# Arrays of log-probabilities and labels


def is_of(x: Any, xp: ModuleType) -> bool:
    """Whether ``x`` is an array of the namespace ``xp``."""
    if not (hasattr(x, "shape") and hasattr(x, "dtype")):
        return False
    try:
        return array_namespace(x) is xp
    except TypeError:
        return False


def same_library(x: Any, name: str, xp: ModuleType, like: str) -> None:
    """Refuse an array ``x`` that is not of the namespace ``xp`` (described by ``like``)."""
    if not is_of(x, xp):
        raise TypeError(
            f"{name}: expected an array of {like}; got {type(x).__module__}.{type(x).__name__}"
        )


def same_dtype(x: Any, name: str, dtype: Any, like: str) -> None:
    """Refuse ``x`` unless its dtype is ``dtype`` (the dtype of the argument ``like``)."""
    if x.dtype != dtype:
        raise TypeError(
            f"{name}: expected dtype {dtype_name(dtype)} like {like}; got {dtype_name(x.dtype)}"
        )


def float_vector(x: Any, name: str, xp: ModuleType, *, length: int | None = None) -> Any:
    """Check that ``x`` is a finite 1-d floating array of ``xp`` (of ``length`` if given)."""
    if not hasattr(x, "shape") or not hasattr(x, "dtype"):
        raise TypeError(f"{name}: expected a 1-d floating array; got {_describe(x)}")
    refuse_masked(x, name)
    same_library(x, name, xp, f"the same library as the other arguments ({xp.__name__})")
    if dtype_kind(x) != "real floating":
        raise TypeError(f"{name}: expected a floating dtype (float32/float64); got {x.dtype}")
    if x.ndim != 1:
        raise ValueError(f"{name}: expected shape (B,); got shape {tuple(x.shape)}")
    if length is not None and x.shape[0] != length:
        raise ValueError(f"{name}: expected shape ({length},) to match; got {tuple(x.shape)}")
    if x.shape[0] == 0:
        raise ValueError(f"{name}: expected a non-empty batch; got shape {tuple(x.shape)}")
    return finite(x, name, xp)


def finite(x: Any, name: str, xp: ModuleType) -> Any:
    """Refuse an array with a NaN or infinite entry, counting them."""
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
    same_library(x, name, xp, f"the same library as the other arguments ({xp.__name__})")
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
    xp = array_namespace(
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
    xp = array_namespace(**logps)
    return xp, float_vectors(next(iter(logps)), logps, xp)


def zero_point(z0: Any, xp: ModuleType, dtype: Any) -> Any:
    """The reference point as a finite 0-d array of ``xp`` and ``dtype``."""
    if not hasattr(z0, "shape"):
        return xp.asarray(scalar(z0, "z0"), dtype=dtype)
    refuse_masked(z0, "z0")
    if tuple(z0.shape) != ():
        raise ValueError(f"z0: expected a scalar or 0-d array; got shape {tuple(z0.shape)}")
    same_library(z0, "z0", xp, f"{xp.__name__} like policy_logps")
    if not xp.isdtype(z0.dtype, ("real floating", "integral")):
        raise TypeError(f"z0: expected a real number; got {_describe(z0)}")
    if not bool(xp.isfinite(z0)):
        raise ValueError(f"z0: expected a finite number; got {float(z0)}")
    return xp.astype(z0, dtype)


def prompt_ids(prompts: Any, num_prompts: int) -> np.ndarray:
    """Prompt ids as an int64 NumPy vector (P',) of ids in ``[0, num_prompts)``."""
    ids = to_numpy(prompts)
    if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(
            f"prompts: expected a 1-d array of prompt ids; got shape {ids.shape} "
            f"and dtype {ids.dtype}"
        )
    if ids.size and not (0 <= ids.min() and ids.max() < num_prompts):
        bad = ids.min() if ids.min() < 0 else ids.max()
        raise ValueError(f"prompts: expected ids in [0, {num_prompts}); got {int(bad)}")
    return ids.astype(np.int64)
