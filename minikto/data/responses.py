"""Padded responses, checked once: the (N, T) int arrays every dataset and reader hold.

A response is a row of token ids, padded with -1 after its end: at least one token, no token
after the padding starts, nothing after the end token, at most ``max_length`` tokens, every id
in ``[0, vocab_size)``. :class:`~minikto.data.feedback.UnpairedDataset`,
:class:`~minikto.data.feedback.PairedDataset`, the JSON Lines readers and the toy's utility
all go through :func:`check_responses`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..backend import to_numpy

__all__ = ["check_responses"]


def check_responses(
    responses: Any,
    name: str,
    *,
    vocab_size: int | None = None,
    eos_token: int | None = None,
    max_length: int | None = None,
) -> np.ndarray:
    """Check a padded (N, W) response array and return it as int64 NumPy.

    Every row holds at least one token, ``-1`` only after its last token, nothing after
    ``eos_token`` and at most ``max_length`` tokens; ids lie in ``[0, vocab_size)``.
    """
    arr = np.asarray(to_numpy(responses))
    if arr.ndim != 2 or not (np.issubdtype(arr.dtype, np.integer) or arr.size == 0):
        raise ValueError(f"{name}: expected a 2-d int array (N, T); got {_describe(arr)}")
    arr = arr.astype(np.int64)
    if arr.shape[1] == 0:
        raise ValueError(f"{name}: expected at least one column (T >= 1); got shape {arr.shape}")
    if arr.size == 0:
        return arr
    upper = vocab_size if vocab_size is not None else np.iinfo(np.int64).max
    if arr.min() < -1 or arr.max() >= upper:
        raise ValueError(f"{name}: expected token ids in [0, {upper}) or -1 for padding; "
                         f"got {int(arr.min())}..{int(arr.max())}")
    pad = arr < 0
    _first_bad_row(pad[:, 0], name, "expected at least one token per response")
    _first_bad_row(np.any(pad[:, :-1] & ~pad[:, 1:], axis=1), name,
                   "expected -1 padding only after the last token")
    if eos_token is not None:
        is_end = arr == eos_token
        after = np.cumsum(is_end, axis=1) - is_end > 0
        _first_bad_row(np.any(after & ~pad, axis=1), name,
                       f"expected nothing but -1 after the end token {eos_token}")
    if max_length is not None:
        _first_bad_row(np.sum(~pad, axis=1) > max_length, name,
                       f"expected at most T = {max_length} tokens per response")
    return arr


def _first_bad_row(bad: np.ndarray, name: str, what: str) -> None:
    if np.any(bad):
        row = int(np.argmax(bad))
        raise ValueError(f"{name}: {what}; got row {row} ({int(np.sum(bad))} bad rows)")


def _describe(x: np.ndarray) -> str:
    return f"an array of shape {x.shape} and dtype {x.dtype}"
