"""CPU-tuned bodies of the softmax of a training step (optional reading).

Each function computes the same numbers as a line or two of the plain math in
:mod:`minikto.policy` and :mod:`minikto.backend`; it has a portable body written with the
array API standard only, and a native body for NumPy and CuPy that saves passes over memory:

- :func:`log_softmax_at`: the log-probabilities of the target tokens (and, for the backward,
  the probabilities) in one pass over the logits, in place, without an (N, V) array of
  log-probabilities;
- :func:`softmax_grad`: ``w (onehot(y) - p)`` without an (N, V) one-hot matrix;
- :func:`scatter_add`: the gradient of a row gather added in place (``add.at``) instead of
  the one-hot product of :func:`minikto.backend.scatter_add`, or the one-hot product by BLAS
  while there are few buckets;
- :func:`matmul` (into a given buffer), :func:`row_sums` and :func:`column_sums` (as BLAS
  products with a vector of ones, which use every core).

``tests/test_fast_paths.py`` pins each native body to its portable one.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import array_api_compat
import numpy as np

from .. import backend

__all__ = [
    "column_sums",
    "log_softmax_at",
    "matmul",
    "native_module",
    "native_namespace",
    "row_sums",
    "scatter_add",
    "softmax_grad",
]


def native_module(*arrays: Any) -> ModuleType | None:
    """The plain ``numpy`` or ``cupy`` module behind the arrays (for in-place writes), or None.

    The array API standard has no ``out=`` arguments and no in-place scatter; NumPy and CuPy
    have both. A kernel takes its native body only when this returns a module.
    """
    return native_namespace(backend.array_namespace(*arrays))


def native_namespace(xp: ModuleType) -> ModuleType | None:
    """:func:`native_module` of a namespace (rather than of arrays)."""
    if array_api_compat.is_numpy_namespace(xp):
        return np
    if array_api_compat.is_cupy_namespace(xp):  # pragma: no cover - needs a GPU
        import cupy

        return cupy
    return None


def matmul(a: Any, b: Any, out: Any = None) -> Any:
    """``a @ b``, written into ``out`` when given and the backend can (NumPy, CuPy)."""
    native = native_module(a, b)
    if native is not None and out is not None:
        return native.matmul(a, b, out=out)
    return a @ b


def row_sums(x: Any) -> Any:
    """``sum(x, axis=1)`` of a 2-d array; NumPy computes it as the BLAS product ``x @ 1``.

    NumPy's own ``sum`` along rows runs on one core and is several times slower than the
    matrix-vector product, which gives the same sums up to rounding.
    """
    if type(x) is np.ndarray and x.ndim == 2 and x.shape[1] > 0:
        return x @ np.ones(x.shape[1], dtype=x.dtype)
    return backend.array_namespace(x).sum(x, axis=1)


def column_sums(x: Any) -> Any:
    """``sum(x, axis=0)`` of a 2-d array; NumPy computes it as the BLAS product ``1 @ x``."""
    if type(x) is np.ndarray and x.ndim == 2 and x.shape[0] > 0:
        return np.ones(x.shape[0], dtype=x.dtype) @ x
    return backend.array_namespace(x).sum(x, axis=0)


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
    native = native_module(logits, targets)
    if native is not None:
        if native is np and logits.shape[1] <= SHORT_ROWS:  # short rows: reduce a transposed copy
            peak = np.ascontiguousarray(logits.T).max(axis=0)[:, None]
        else:
            peak = native.max(logits, axis=1, keepdims=True)
        shifted = native.subtract(logits, peak, out=logits if overwrite else None)
        picked = shifted[native.arange(n), targets]  # s at the targets, (N,)
        exps = native.exp(shifted, out=shifted)
        total = row_sums(exps)  # (N,), each >= 1
        picked = picked - native.log(total)
        if not return_probs:
            return picked, None
        return picked, native.multiply(exps, (1 / total)[:, None], out=exps)
    xp = backend.array_namespace(logits, targets)
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
    native = native_module(probs, targets, weight)
    if native is not None:
        grad = native.multiply(probs, -weight[:, None], out=out)
        grad[native.arange(probs.shape[0]), targets] += weight
        return grad
    xp = backend.array_namespace(probs, targets, weight)
    vocab = xp.arange(probs.shape[1], dtype=targets.dtype)
    onehot = xp.astype(targets[:, None] == vocab[None, :], probs.dtype)
    return weight[:, None] * (onehot - probs)


# ------------------------------------------------------------------------------------------
# Scatter-add: the gradient of a row gather

#: Below this many buckets NumPy scatters with a one-hot matrix product (BLAS, every core);
#: above it, with one unbuffered ``add.at`` on the flattened arrays.
ONEHOT_SCATTER_ROWS = 128


def scatter_add(values: Any, index: Any, num_rows: int) -> Any:
    """:func:`minikto.backend.scatter_add` (``out[index[n]] += values[n]``), added in place.

    NumPy keeps the one-hot product while ``num_rows <= ONEHOT_SCATTER_ROWS`` (BLAS does
    those ``N * num_rows * K`` multiply-adds faster than any scatter); for more buckets it
    adds the values one by one into the flattened output with ``np.add.at``
    (``out[index[n] * K + k]``), which costs ``N * K``. CuPy uses ``cupyx.scatter_add``
    (atomic adds on the GPU); other namespaces take the portable one-hot product.
    """
    native = native_module(values, index)
    if native is np and num_rows > ONEHOT_SCATTER_ROWS:
        width = values.shape[1]
        out = np.zeros(num_rows * width, dtype=values.dtype)
        flat = (index[:, None] * width + np.arange(width)).reshape(-1)
        np.add.at(out, flat, values.reshape(-1))
        return out.reshape(num_rows, width)
    if native is not None and native is not np:  # pragma: no cover - CuPy, needs a GPU
        import cupyx

        out = native.zeros((num_rows, values.shape[1]), dtype=values.dtype)
        cupyx.scatter_add(out, index, values)
        return out
    return backend.scatter_add(values, index, num_rows)
