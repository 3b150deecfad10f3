"""The backend shim: one array namespace ``xp`` for NumPy, CuPy or any array-API library.

Every numerical function in minikto starts from an array namespace ``xp`` and then uses only
functions of the array API standard (2024.12). This module resolves that namespace (from a
name or from the arrays passed in) and writes, once, the few helpers the standard lacks:

- ``logsumexp`` / ``log_softmax`` / ``softmax``: shift by the row maximum before ``exp``;
- ``log_sigmoid`` / ``sigmoid``: branch-free forms that never evaluate ``exp`` of a large
  positive number, so logits of +-1e4 give no overflow warning and no NaN;
- ``scatter_add``: the transpose of a row gather, needed for the gradient of gathered rows,
  as a one-hot matrix product.

That is all a reader needs. The CPU tuning of a training step (an in-place softmax, BLAS
sums, scatters that add in place, blocks of rows sized in bytes) is optional reading in
:mod:`minikto.fast`.

Nothing else in minikto imports NumPy for arithmetic on model arrays.
"""

from __future__ import annotations

import importlib.util
from types import ModuleType
from typing import Any

import array_api_compat
import array_api_compat.numpy as np_compat
import numpy as np

from ._brief import brief

__all__ = [
    "ARRAY_API_VERSION",
    "KNOWN_BACKENDS",
    "array_namespace",
    "dtype_name",
    "get_namespace",
    "log_sigmoid",
    "log_softmax",
    "logsumexp",
    "resolve_dtype",
    "scatter_add",
    "sigmoid",
    "softmax",
    "to_numpy",
]

#: The version of the array API standard minikto is written against.
ARRAY_API_VERSION = "2024.12"


# ------------------------------------------------------------------------------------------
# Resolving a namespace


#: The backend names :func:`get_namespace` accepts (any other library: pass its module).
KNOWN_BACKENDS = ("numpy", "array_api_strict", "cupy")


def get_namespace(backend: str | ModuleType = "numpy") -> ModuleType:
    """Return the array namespace for a backend name (or for an array library's module).

    Parameters
    ----------
    backend : str or module
        ``"numpy"`` (default), ``"cupy"`` or ``"array_api_strict"``; or the module of an
        array library itself (``numpy``, ``torch``...), returned wrapped by array-api-compat
        where needed. Other names are refused without importing anything: a backend name
        never runs a module minikto does not know.

    Returns
    -------
    module
        A namespace that follows the array API standard.
    """
    if isinstance(backend, ModuleType):
        name = backend.__name__
    elif isinstance(backend, str):
        name = backend
    else:
        raise TypeError(
            f"backend: expected a name such as 'numpy', 'cupy' or 'array_api_strict', "
            f"or a namespace module; got {type(backend).__name__}"
        )
    if name in ("numpy", "array_api_compat.numpy"):
        return np_compat
    if name in ("cupy", "array_api_compat.cupy"):  # pragma: no cover - needs a GPU
        try:
            import array_api_compat.cupy as cp_compat
        except ImportError as err:  # pragma: no cover - depends on the machine
            raise ValueError(
                "backend: 'cupy' was requested but CuPy cannot be imported "
                f"({err}); install the 'gpu' extra on a machine with a CUDA GPU"
            ) from err
        return cp_compat
    if name == "array_api_strict":
        import array_api_strict

        array_api_strict.set_array_api_strict_flags(api_version=ARRAY_API_VERSION)
        return array_api_strict
    if isinstance(backend, ModuleType):
        try:
            return array_namespace(backend.asarray([0.0]))  # the namespace of its arrays
        except (TypeError, AttributeError) as err:
            raise ValueError(f"backend: {brief(name)} is not an array API library ({err})") from err
    if _importable(name):
        raise ValueError(
            f"backend: {brief(name)} is not an array API library minikto knows; expected one of "
            f"{KNOWN_BACKENDS}, or the module of an array library itself "
            "(e.g. get_namespace(torch)); nothing was imported"
        )
    raise ValueError(
        f"backend: expected 'numpy', 'cupy', 'array_api_strict' or an importable array "
        f"library; got {brief(name)}, which cannot be imported (no module of that name)"
    )


def _importable(name: str) -> bool:
    """Whether a top-level module ``name`` exists, found without importing (running) it."""
    top = name.split(".", 1)[0]
    if not top.isidentifier():
        return False
    return importlib.util.find_spec(top) is not None


def array_namespace(*arrays: Any, **named: Any) -> ModuleType:
    """Return the one namespace shared by the arrays (``None`` and Python scalars are skipped).

    This is minikto's one resolver of the namespace of arrays. Arrays passed by keyword are
    arguments of a public function: each must be an array (a masked array is refused), and
    an error names it.

    Raises
    ------
    TypeError
        When a named argument is not an array, or the arrays come from two different
        libraries (naming both).
    """
    if not named and all(type(a) is np.ndarray for a in arrays):
        return np_compat  # plain NumPy arrays: a type test instead of the general walk
    for name, x in named.items():
        if x is not None and not (hasattr(x, "shape") and hasattr(x, "dtype")):
            raise TypeError(f"{name}: expected an array (NumPy, CuPy, ...); got {describe(x)}")
        refuse_masked(x, name)
    present = [
        a
        for a in (*arrays, *named.values())
        if a is not None and not isinstance(a, (bool, int, float))
    ]
    if all(type(a) is np.ndarray or isinstance(a, np.generic) for a in present):
        return np_compat  # plain NumPy (or nothing)
    try:
        return array_api_compat.array_namespace(*present)
    except TypeError as err:
        kinds = sorted({type(a).__module__.split(".")[0] + "." + type(a).__name__ for a in present})
        raise TypeError(
            f"arrays: expected all arrays from one array library; got a mix of {kinds}. "
            "Move them to one backend first (minikto.backend.to_numpy, or xp.asarray)."
        ) from err


def refuse_masked(x: Any, name: str) -> None:
    """Refuse a NumPy masked array (its masked entries would count in some sums only)."""
    if isinstance(x, np.ma.MaskedArray):
        raise TypeError(
            f"{name}: expected a plain array; got a masked array (masked entries would count "
            "in some sums and not in others): drop or fill them first, e.g. x.compressed()"
        )


def describe(x: Any) -> str:
    """What came, for an error message: an array's shape and dtype, or a value's type."""
    shape = getattr(x, "shape", None)
    if shape is not None:
        return f"an array of shape {tuple(shape)} and dtype {getattr(x, 'dtype', None)}"
    return f"{type(x).__name__} {brief(x)}"


def dtype_name(dtype: Any) -> str:
    """The short name of a dtype of any backend: ``"float32"``, ``"int64"``, ``"bool"``..."""
    name = getattr(dtype, "name", None) or getattr(dtype, "__name__", None) or str(dtype)
    return str(name).rsplit(".", 1)[-1]


def resolve_dtype(xp: ModuleType, dtype: Any) -> Any:
    """Return the floating dtype object of ``xp`` named by ``dtype`` ("float32"/"float64")."""
    name = dtype if isinstance(dtype, str) else dtype_name(dtype)
    if name not in ("float32", "float64"):
        raise ValueError(f"dtype: expected 'float32' or 'float64'; got {brief(dtype)}")
    return getattr(xp, name)


def to_numpy(x: Any) -> np.ndarray:
    """Copy an array of any backend to a NumPy array (for printing, plotting, saving)."""
    if isinstance(x, np.ndarray):
        return x
    if isinstance(x, (bool, int, float, list, tuple, np.generic)):
        return np.asarray(x)
    if type(x).__module__.startswith("cupy"):  # pragma: no cover - needs a GPU
        return x.get()
    try:
        return np.from_dlpack(x)
    except (TypeError, RuntimeError, BufferError, AttributeError):
        return np.asarray(x)


# ------------------------------------------------------------------------------------------
# Stable elementwise and reduction helpers


def logsumexp(x: Any, axis: int = -1, keepdims: bool = False) -> Any:
    """``log(sum(exp(x), axis))`` computed as ``m + log(sum(exp(x - m)))`` with ``m = max(x)``.

    Subtracting the maximum makes every exponent <= 0, so nothing overflows, and the largest
    term is exactly 1, so the sum is never 0 and its log is finite.
    """
    xp = array_namespace(x)
    m = xp.max(x, axis=axis, keepdims=True)
    out = m + xp.log(xp.sum(xp.exp(x - m), axis=axis, keepdims=True))
    return out if keepdims else xp.squeeze(out, axis=axis)


def log_softmax(x: Any, axis: int = -1) -> Any:
    """``(x - m) - log(sum(exp(x - m)))`` along ``axis``, ``m = max(x)``: log-probabilities of
    a categorical with logits x, exact for any finite logits.

    The shift comes first, not as ``x - logsumexp(x)``: from logits of about 1e16 on,
    ``m + log(sum)`` rounds back to ``m`` and the log-probabilities lose their normalisation
    (``[1e16, 1e16, 0]`` would give probabilities summing to 2). A logit more than the
    largest float below the maximum has a log-probability below ``-finfo.max``, which rounds
    to ``-inf`` (its probability, 0, is exact); it is set so without computing ``x - m``,
    which would overflow (and warn).
    """
    xp = array_namespace(x)
    m = xp.max(x, axis=axis, keepdims=True)
    floor = xp.maximum(m, xp.zeros_like(m)) - xp.finfo(x.dtype).max  # in [-max, 0]: no overflow
    shifted = xp.maximum(x, floor) - m  # >= -max: no overflow
    shifted = xp.where(x < floor, xp.full_like(shifted, -xp.inf), shifted)
    return shifted - xp.log(xp.sum(xp.exp(shifted), axis=axis, keepdims=True))


def softmax(x: Any, axis: int = -1) -> Any:
    """``exp(log_softmax(x))``: probabilities that sum to 1 along ``axis``.

    Computed as ``e / sum(e)`` with ``e = exp(x - max(x))``: exponentiating the difference
    ``x - logsumexp(x)`` of two large numbers would cost digits (1e-4 in float32 at logits
    of 1e4).
    """
    xp = array_namespace(x)
    e = xp.exp(x - xp.max(x, axis=axis, keepdims=True))
    return e / xp.sum(e, axis=axis, keepdims=True)


def log_sigmoid(x: Any) -> Any:
    """``log(sigmoid(x)) = min(x, 0) - log1p(exp(-|x|))``: exact, never overflows."""
    xp = array_namespace(x)
    return xp.minimum(x, xp.zeros_like(x)) - xp.log1p(xp.exp(-xp.abs(x)))


def sigmoid(x: Any) -> Any:
    """``1 / (1 + exp(-x))`` evaluated with ``e = exp(-|x|) <= 1`` on both branches.

    For ``x >= 0`` it is ``1 / (1 + e)``; for ``x < 0`` it is ``e / (1 + e)``.
    """
    xp = array_namespace(x)
    e = xp.exp(-xp.abs(x))
    return xp.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


# ------------------------------------------------------------------------------------------
# Scatter-add: the gradient of a row gather


def scatter_add(values: Any, index: Any, num_rows: int) -> Any:
    """Sum the rows of ``values`` into ``num_rows`` buckets: ``out[index[n]] += values[n]``.

    This is the backward pass of ``xp.take(table, index, axis=0)``: the one-hot matrix
    product ``onehot(index).T @ values`` with ``onehot[n, r] = (index[n] == r)``. It costs
    ``N * num_rows * K`` multiply-adds and needs only the standard;
    :func:`minikto.fast.kernels.scatter_add` adds in place instead (``N * K``).

    Parameters
    ----------
    values : array, shape (N, K)
    index : integer array, shape (N,), entries in ``[0, num_rows)``
    num_rows : int

    Returns
    -------
    array, shape (num_rows, K)
    """
    xp = array_namespace(values, index)
    rows = xp.arange(num_rows, dtype=index.dtype)
    onehot = xp.astype(index[None, :] == rows[:, None], values.dtype)  # (num_rows, N)
    return onehot @ values
