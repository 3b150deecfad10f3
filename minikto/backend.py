"""The backend shim: one array namespace ``xp`` for NumPy, CuPy or any array-API library.

Every numerical function in minikto starts from an array namespace ``xp`` and then uses only
functions of the array API standard (2024.12). This module resolves that namespace (from a
name or from the arrays passed in) and writes, once, the few helpers the standard lacks:

- ``logsumexp`` / ``log_softmax`` / ``softmax``: shift by the row maximum before ``exp``;
- ``log_sigmoid`` / ``sigmoid``: branch-free forms that never evaluate ``exp`` of a large
  positive number, so logits of +-1e4 give no overflow warning and no NaN;
- ``scatter_add``: the transpose of a row gather, needed for the gradient of gathered rows.
  The portable form is a one-hot matrix product; NumPy and CuPy get a native fast path.

The hot path of a training step (see :mod:`minikto.policy`) also goes through a few helpers
that the standard could express but not fast enough; each has a portable body written with
the standard only, and a native body for NumPy and CuPy that computes the same numbers:

- ``log_softmax_at``: the log-probabilities of the target tokens (and, for the backward, the
  probabilities) in one pass over the logits, without an (N, V) array of log-probabilities;
- ``softmax_grad``: ``w (onehot(y) - p)`` without an (N, V) one-hot matrix;
- ``matmul`` (into a given buffer), ``row_sums`` and ``column_sums`` (as BLAS products with
  a vector of ones, which use every core), ``rows_per_chunk`` (how many rows of an (N, V)
  array to process at a time so that they stay in the CPU cache).

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
    "column_sums",
    "get_namespace",
    "is_numpy",
    "is_cupy",
    "log_sigmoid",
    "log_softmax",
    "log_softmax_at",
    "logsumexp",
    "matmul",
    "native_module",
    "resolve_dtype",
    "row_sums",
    "rows_per_chunk",
    "scatter_add",
    "sigmoid",
    "softmax",
    "softmax_grad",
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
# Native fast paths: NumPy and CuPy take them, every other namespace the portable body


def native_module(xp: ModuleType) -> ModuleType | None:
    """The plain ``numpy`` or ``cupy`` module behind ``xp`` (for ``out=`` arguments), or None.

    The array API standard has no ``out=`` arguments and no in-place scatter; NumPy and CuPy
    have both. A helper below takes its native body only when this returns a module.
    """
    if is_numpy(xp):
        return np
    if is_cupy(xp):  # pragma: no cover - needs a GPU
        import cupy

        return cupy
    return None


def _native_of(*arrays: Any) -> ModuleType | None:
    """:func:`native_module` of the arrays' namespace, with a quick exit for NumPy arrays.

    (Resolving a namespace costs microseconds; a small training step calls these helpers a
    few dozen times.)
    """
    if all(type(a) is np.ndarray for a in arrays):
        return np
    return native_module(array_namespace(*arrays))


#: NumPy processes an (N, V) array in row blocks of about this many bytes, so that the
#: passes of the softmax over one block run in the CPU's cache instead of main memory.
CHUNK_BYTES = 8 * 2**20
#: ... but never fewer rows than this, so that each block is still a good matrix product.
MIN_CHUNK_ROWS = 64


def rows_per_chunk(xp: ModuleType, row_bytes: int) -> int | None:
    """How many rows of an (N, V) array to process at a time, or None for all at once.

    Parameters
    ----------
    xp : namespace
    row_bytes : int
        The size of one row, ``V * itemsize``.

    Returns
    -------
    int or None
        NumPy: about :data:`CHUNK_BYTES` of rows, at least :data:`MIN_CHUNK_ROWS`. CuPy and
        the others: None (a GPU wants the whole array in one kernel; the portable path
        stays as simple as the math).
    """
    if not is_numpy(xp):
        return None
    return max(MIN_CHUNK_ROWS, CHUNK_BYTES // max(1, row_bytes))


def matmul(a: Any, b: Any, out: Any = None) -> Any:
    """``a @ b``, written into ``out`` when given and the backend can (NumPy, CuPy)."""
    nx = _native_of(a, b)
    if nx is not None and out is not None:
        return nx.matmul(a, b, out=out)
    return a @ b


def row_sums(x: Any) -> Any:
    """``sum(x, axis=1)`` of a 2-d array; NumPy computes it as the BLAS product ``x @ 1``.

    NumPy's own ``sum`` along rows runs on one core and is several times slower than the
    matrix-vector product, which gives the same sums up to rounding.
    """
    if type(x) is np.ndarray and x.ndim == 2 and x.shape[1] > 0:
        return x @ np.ones(x.shape[1], dtype=x.dtype)
    return array_namespace(x).sum(x, axis=1)


def column_sums(x: Any) -> Any:
    """``sum(x, axis=0)`` of a 2-d array; NumPy computes it as the BLAS product ``1 @ x``."""
    if type(x) is np.ndarray and x.ndim == 2 and x.shape[0] > 0:
        return np.ones(x.shape[0], dtype=x.dtype) @ x
    return array_namespace(x).sum(x, axis=0)


# ------------------------------------------------------------------------------------------
# The softmax of a training step: forward at the targets, and its backward


#: NumPy takes the maximum of rows this short or shorter over the columns of a transposed
#: copy: its reduction along a short last axis costs tens of nanoseconds per row.
SHORT_ROWS = 64


def log_softmax_at(
    logits: Any, targets: Any, *, return_probs: bool = False, overwrite: bool = False
) -> tuple[Any, Any]:
    r"""Log-probabilities of the target tokens, and optionally every probability, in one pass.

    Parameters
    ----------
    logits : float array, shape (N, V)
    targets : integer array, shape (N,), entries in ``[0, V)``
    return_probs : bool
        Also return ``softmax(logits)`` (what the backward pass needs).
    overwrite : bool
        Allow NumPy and CuPy to reuse the memory of ``logits`` (which is then destroyed)
        for the probabilities; no (N, V) array is allocated at all.

    Returns
    -------
    picked : array, shape (N,)
        ``log_softmax(logits)[n, targets[n]]``.
    probs : array, shape (N, V), or None
        ``softmax(logits)`` when ``return_probs``.

    Notes
    -----
    With the row maximum :math:`m_n = \max_v \ell_{nv}` and the shifted logits
    :math:`s_{nv} = \ell_{nv} - m_n \le 0`,

    .. math:: \log\mathrm{softmax}(\ell_n)_{y_n} = s_{n y_n} - \log\sum_v e^{s_{nv}},
              \qquad \mathrm{softmax}(\ell_n)_v = e^{s_{nv}} / \sum_{v'} e^{s_{nv'}} .

    Only the target entry of each row is ever written as a log-probability; the four passes
    over the (N, V) buffer are: max, shift, exp, sum (and a scaling when ``return_probs``).
    The largest exponent is ``exp(0) = 1``: nothing overflows and the sum is >= 1.
    """
    n = logits.shape[0]
    nx = _native_of(logits, targets)
    if nx is not None:
        if nx is np and logits.shape[1] <= SHORT_ROWS:  # short rows: reduce a transposed copy
            peak = np.ascontiguousarray(logits.T).max(axis=0)[:, None]
        else:
            peak = nx.max(logits, axis=1, keepdims=True)
        shifted = nx.subtract(logits, peak, out=logits if overwrite else None)
        picked = shifted[nx.arange(n), targets]  # s at the targets, (N,)
        exps = nx.exp(shifted, out=shifted)
        total = row_sums(exps)  # (N,), each >= 1
        picked = picked - nx.log(total)
        if not return_probs:
            return picked, None
        return picked, nx.multiply(exps, (1 / total)[:, None], out=exps)
    xp = array_namespace(logits, targets)
    peak = xp.max(logits, axis=1, keepdims=True)
    shifted = logits - peak
    picked = xp.take_along_axis(shifted, targets[:, None], axis=1)[:, 0]
    exps = xp.exp(shifted)
    total = xp.sum(exps, axis=1)
    picked = picked - xp.log(total)
    return picked, (exps / total[:, None] if return_probs else None)


def softmax_grad(probs: Any, targets: Any, weight: Any, *, out: Any = None) -> Any:
    r"""``weight[n] * (onehot(targets[n]) - probs[n])``: the gradient of weighted log-probs.

    Parameters
    ----------
    probs : float array, shape (N, V)
        ``softmax(logits)``.
    targets : integer array, shape (N,)
    weight : float array, shape (N,)
        The upstream gradient of each row's ``log_softmax(logits)[n, targets[n]]``.
    out : array, shape (N, V), optional
        NumPy and CuPy write the result there (it must not be ``probs``).

    Returns
    -------
    array, shape (N, V)

    Notes
    -----
    :math:`\partial \log\mathrm{softmax}(\ell)_y / \partial \ell = \mathrm{onehot}(y) - p`,
    so the gradient is :math:`-w_n p_{nv}` everywhere plus :math:`w_n` at
    :math:`v = y_n`. NumPy and CuPy write exactly that (one multiply, then one add per row);
    the portable body builds the one-hot matrix.
    """
    nx = _native_of(probs, targets, weight)
    if nx is not None:
        grad = nx.multiply(probs, -weight[:, None], out=out)
        grad[nx.arange(probs.shape[0]), targets] += weight
        return grad
    xp = array_namespace(probs, targets, weight)
    vocab = xp.arange(probs.shape[1], dtype=targets.dtype)
    onehot = xp.astype(targets[:, None] == vocab[None, :], probs.dtype)
    return weight[:, None] * (onehot - probs)


# ------------------------------------------------------------------------------------------
# Scatter-add: the gradient of a row gather

#: Below this many buckets NumPy scatters with a one-hot matrix product (BLAS, every core);
#: above it, with one unbuffered ``add.at`` on the flattened arrays.
ONEHOT_SCATTER_ROWS = 128


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
    standard, and NumPy uses it too while ``num_rows <= ONEHOT_SCATTER_ROWS`` (BLAS does
    those multiply-adds faster than any scatter). For more buckets NumPy adds the values
    one by one into the flattened output with ``np.add.at`` (``out[index[n] * K + k]``),
    which costs ``N * K``; CuPy uses ``cupyx.scatter_add`` (atomic adds on the GPU).
    """
    nx = _native_of(values, index)
    if nx is np:
        if num_rows > ONEHOT_SCATTER_ROWS:
            width = values.shape[1]
            out = np.zeros(num_rows * width, dtype=values.dtype)
            flat = (index[:, None] * width + np.arange(width)).reshape(-1)
            np.add.at(out, flat, values.reshape(-1))
            return out.reshape(num_rows, width)
        onehot = (index[None, :] == np.arange(num_rows)[:, None]).astype(values.dtype)
        return onehot @ values
    if nx is not None:  # pragma: no cover - CuPy, needs a GPU
        import cupyx

        out = nx.zeros((num_rows, values.shape[1]), dtype=values.dtype)
        cupyx.scatter_add(out, index, values)
        return out
    xp = array_namespace(values, index)
    rows = xp.arange(num_rows, dtype=index.dtype)
    onehot = xp.astype(index[None, :] == rows[:, None], values.dtype)  # (num_rows, N)
    return onehot @ values
