"""The backend shim: one array namespace ``xp`` for NumPy, CuPy or any array-API library.

Every numerical function in minikto starts from an array namespace ``xp`` and then uses only
functions of the array API standard (2024.12). This module resolves that namespace (from a
name or from the arrays passed in) and writes, once, the few helpers the standard lacks:

- ``logsumexp`` / ``log_softmax`` / ``softmax``: shift by the row maximum before ``exp``;
- ``log_sigmoid`` / ``sigmoid``: branch-free forms that never evaluate ``exp`` of a large
  positive number, so logits of +-1e4 give no overflow warning and no NaN;
- ``scatter_add``: the transpose of a row gather, needed for the gradient of gathered rows.
  The portable form is a one-hot matrix product; NumPy and CuPy get a native fast path.

Nothing else in minikto imports NumPy for arithmetic on model arrays.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import array_api_compat
import array_api_compat.numpy as np_compat
import numpy as np

__all__ = [
    "ARRAY_API_VERSION",
    "array_namespace",
    "get_namespace",
    "is_numpy",
    "is_cupy",
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


def get_namespace(backend: str | ModuleType = "numpy") -> ModuleType:
    """Return the array namespace for a backend name (or pass a namespace through).

    Parameters
    ----------
    backend : str or module
        ``"numpy"`` (default), ``"cupy"``, ``"array_api_strict"``, or the import name of any
        library array-api-compat knows (``"torch"``, ``"dask.array"``...). A module is
        returned wrapped by array-api-compat where needed.

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
    if name in ("cupy", "array_api_compat.cupy"):
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
    try:
        module = __import__(name, fromlist=["_"])
    except ImportError as err:
        raise ValueError(
            f"backend: expected 'numpy', 'cupy', 'array_api_strict' or an importable "
            f"array library; got {name!r}, which cannot be imported ({err})"
        ) from err
    try:
        return array_api_compat.array_namespace(module.asarray([0.0]))
    except (TypeError, AttributeError) as err:
        raise ValueError(f"backend: {name!r} is not an array API library ({err})") from err


def array_namespace(*arrays: Any) -> ModuleType:
    """Return the one namespace shared by ``arrays`` (``None`` and Python scalars are skipped).

    Raises
    ------
    TypeError
        When the arrays come from two different libraries, naming both.
    """
    present = [a for a in arrays if a is not None and not isinstance(a, (bool, int, float))]
    if not present:
        return np_compat
    try:
        return array_api_compat.array_namespace(*present)
    except TypeError as err:
        kinds = sorted({type(a).__module__.split(".")[0] + "." + type(a).__name__ for a in present})
        raise TypeError(
            f"arrays: expected all arrays from one array library; got a mix of {kinds}. "
            "Move them to one backend first (minikto.backend.to_numpy, or xp.asarray)."
        ) from err


def is_numpy(xp: ModuleType) -> bool:
    """True when ``xp`` is NumPy (plain or wrapped by array-api-compat)."""
    return array_api_compat.is_numpy_namespace(xp)


def is_cupy(xp: ModuleType) -> bool:
    """True when ``xp`` is CuPy (plain or wrapped by array-api-compat)."""
    return array_api_compat.is_cupy_namespace(xp)


def resolve_dtype(xp: ModuleType, dtype: Any) -> Any:
    """Return the floating dtype object of ``xp`` named by ``dtype`` ("float32"/"float64")."""
    name = dtype if isinstance(dtype, str) else getattr(dtype, "name", str(dtype))
    name = str(name).rsplit(".", 1)[-1]
    if name not in ("float32", "float64"):
        raise ValueError(f"dtype: expected 'float32' or 'float64'; got {dtype!r}")
    return getattr(xp, name)


def to_numpy(x: Any) -> np.ndarray:
    """Copy an array of any backend to a NumPy array (for printing, plotting, saving)."""
    if isinstance(x, np.ndarray):
        return x
    if isinstance(x, (bool, int, float, list, tuple, np.generic)):
        return np.asarray(x)
    if type(x).__module__.startswith("cupy"):
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
    """``x - logsumexp(x)`` along ``axis``: log-probabilities of a categorical with logits x."""
    return x - logsumexp(x, axis=axis, keepdims=True)


def softmax(x: Any, axis: int = -1) -> Any:
    """``exp(log_softmax(x))``: probabilities that sum to 1 along ``axis``."""
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

    This is the backward pass of ``xp.take(table, index, axis=0)``.

    Parameters
    ----------
    values : array, shape (N, K)
    index : integer array, shape (N,), entries in ``[0, num_rows)``
    num_rows : int

    Returns
    -------
    array, shape (num_rows, K)

    Notes
    -----
    The portable form is the matrix product ``onehot(index).T @ values`` with
    ``onehot[n, r] = (index[n] == r)``; it costs ``N * num_rows * K`` but needs only the
    standard. NumPy and CuPy use their unbuffered ``add.at`` instead.
    """
    xp = array_namespace(values, index)
    if is_numpy(xp):
        out = np.zeros((num_rows, values.shape[1]), dtype=values.dtype)
        np.add.at(out, index, values)
        return out
    if is_cupy(xp):  # pragma: no cover - needs a GPU
        import cupy
        import cupyx

        out = cupy.zeros((num_rows, values.shape[1]), dtype=values.dtype)
        cupyx.scatter_add(out, index, values)
        return out
    rows = xp.arange(num_rows, dtype=index.dtype)
    onehot = xp.astype(index[:, None] == rows[None, :], values.dtype)
    return onehot.T @ values
