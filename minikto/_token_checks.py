"""Checks of token batches, written once: the (B,) prompts and (B, T) responses a policy
scores, the upstream gradient of its backward pass and the cache of its forward pass.

Same message shape as :mod:`minikto._checks`: ``"<argument>: expected <what>; got <what came>"``.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

from ._brief import brief
from ._checks import is_of, same_library
from .backend import refuse_masked
from .fast.checks import dtype_kind, integer_range


def token_ids(
    ids: Any, name: str, xp: ModuleType, backend: str, upper: int, *, ndim: int,
    padding: bool = False,
) -> tuple[Any, int]:
    """Checked int64 ids of ``xp`` in ``[0, upper)`` (with ``padding``: -1 too), and their
    minimum."""
    refuse_masked(ids, name)
    if not is_of(ids, xp):
        if isinstance(ids, (list, tuple, np.ndarray, np.generic)):
            ids = xp.asarray(np.asarray(ids))
        elif not hasattr(ids, "dtype"):
            raise TypeError(f"{name}: expected an integer array; got {type(ids).__name__}")
        same_library(ids, name, xp, f"the policy's backend ({backend})")
    if ids.ndim != ndim:
        raise ValueError(f"{name}: expected a {ndim}-d array; got shape {tuple(ids.shape)}")
    if ids.shape[0] == 0:
        raise ValueError(f"{name}: expected a non-empty batch; got shape {tuple(ids.shape)}")
    if any(size == 0 for size in ids.shape):  # (B, 0): no ids to check; refused later
        return ids, 0
    if dtype_kind(ids) != "integral":
        raise TypeError(f"{name}: expected integer ids; got dtype {ids.dtype}")
    if ids.dtype != xp.int64:
        ids = xp.astype(ids, xp.int64)
    low = -1 if padding else 0
    smallest, largest = integer_range(ids)
    if smallest < low or largest >= upper:
        bad = smallest if smallest < low else largest
        extra = " (or -1 for padding)" if padding else ""
        raise ValueError(f"{name}: expected ids in [0, {upper}){extra}; got {bad}")
    return ids, smallest


def token_batch(
    prompts: Any, responses: Any, xp: ModuleType, backend: str, *,
    num_prompts: int, vocab_size: int, eos_token: int | None,
) -> tuple[Any, Any, bool]:
    """Checked (B,) prompts and (B, T) responses (int64 of ``xp``), and whether any is padded.

    A response is its tokens, then only ``-1`` padding; nothing but padding follows the end
    token ``eos_token``.
    """
    prompts, _ = token_ids(prompts, "prompts", xp, backend, num_prompts, ndim=1)
    responses, smallest = token_ids(
        responses, "responses", xp, backend, vocab_size, ndim=2, padding=True
    )
    padded = smallest < 0
    if responses.shape[0] != prompts.shape[0]:
        raise ValueError(
            f"responses: expected {prompts.shape[0]} rows, one per prompt; "
            f"got shape {tuple(responses.shape)}"
        )
    if responses.shape[1] == 0:
        raise ValueError("responses: expected at least one position (T >= 1); got T = 0")
    if padded or eos_token is not None:
        _padding(responses, xp, eos_token)
    return prompts, responses, padded


def _first_row(rows: Any, xp: ModuleType) -> int:
    return int(xp.argmax(xp.astype(rows, xp.int8)))


def _padding(responses: Any, xp: ModuleType, eos_token: int | None) -> None:
    pad = responses < 0
    if bool(xp.any(pad[:, 0])):
        raise ValueError(
            "responses: expected at least one token per response; "
            f"row {_first_row(pad[:, 0], xp)} is empty"
        )
    bad = xp.any(pad[:, :-1] & ~pad[:, 1:], axis=1)
    if bool(xp.any(bad)):
        raise ValueError(
            f"responses: expected -1 padding only after the last token; row "
            f"{_first_row(bad, xp)} has a token after padding"
        )
    if eos_token is not None:
        is_eos = xp.astype(responses == eos_token, xp.int64)
        after = xp.any(((xp.cumulative_sum(is_eos, axis=1) - is_eos) > 0) & ~pad, axis=1)
        if bool(xp.any(after)):
            raise ValueError(
                f"responses: expected nothing but -1 after the end token {eos_token}; "
                f"row {_first_row(after, xp)} continues after it"
            )


def upstream_gradient(grad: Any, policy: Any, rows: int) -> Any:
    """``grad_logps`` of a policy's backward pass: a finite (rows,) array of the policy's
    backend, cast to its dtype."""
    xp, backend, dtype = policy.xp, policy.backend, policy.dtype
    if not hasattr(grad, "shape") or tuple(grad.shape) != (rows,):
        raise ValueError(
            f"grad_logps: expected shape ({rows},); got {brief(getattr(grad, 'shape', grad))}"
        )
    refuse_masked(grad, "grad_logps")
    same_library(grad, "grad_logps", xp, f"the policy's backend ({backend})")
    if not bool(xp.all(xp.isfinite(grad))):
        bad = int(xp.sum(xp.astype(~xp.isfinite(grad), xp.int64)))
        raise ValueError(f"grad_logps: expected finite values; got {bad} that are not")
    return grad if grad.dtype == dtype else xp.astype(grad, dtype)


def cache_probs(cache: Any, positions: int, vocab_size: int) -> Any:
    """The probabilities (N, V) of a forward pass's cache, refusing the cache of a batch of
    another size."""
    if tuple(cache.probs.shape) != (positions, vocab_size):
        raise ValueError(
            f"cache: expected the cache of this batch, probs of shape "
            f"({positions}, {vocab_size}); got {tuple(cache.probs.shape)}"
        )
    return cache.probs
