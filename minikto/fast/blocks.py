r"""The policy's forward and backward pass, block of positions by block (optional reading).

:meth:`~minikto.policy.SoftmaxPolicy.sequence_logps` and
:meth:`~minikto.policy.SoftmaxPolicy.sequence_logps_backward` are written as the math: one
(N, V) array of logits for the N = B*T positions, its log-softmax, and for the backward
``g (onehot(y) - p)``. That holds several (N, V) arrays at once, and on a CPU each of the
softmax's passes over an array larger than the cache runs at the speed of main memory.

When the (N, V) work exceeds :data:`MEMORY_BUDGET_BYTES` (:func:`wanted`), the policy calls
the two functions below instead. They compute the same numbers (``tests/test_fast_paths.py``
checks it to 1e-12 in float64, over several blocks, on NumPy and array_api_strict):

- the forward pass computes the logits of a block of about :data:`BLOCK_BYTES` at a time,
  turns it into the target log-probabilities in place (:func:`~.kernels.log_softmax_at`) and
  keeps only those, unless the cache asks for the probabilities, which are then written
  straight into the one (N, V) array the cache holds;
- the backward pass writes ``g (onehot(y) - p)`` of a block into one reused buffer
  (:func:`~.kernels.softmax_grad`) and adds the block's contribution to each gradient: the
  feature map's gradient and the bias gradient are sums over positions.

The feature map's ``context`` (the hidden vectors of the embeddings) is computed once per
batch and shared by both passes.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from .. import _token_checks
from ..backend import is_numpy, native_module
from .kernels import column_sums, log_softmax_at, softmax_grad

__all__ = ["BLOCK_BYTES", "MEMORY_BUDGET_BYTES", "sequence_logps", "sequence_logps_backward"]

#: Above this many bytes of (N, V) work, NumPy and CuPy take the block-wise path.
MEMORY_BUDGET_BYTES = 8 * 2**20
#: NumPy processes an (N, V) array in row blocks of about this many bytes, so that the
#: passes of the softmax over one block run in the CPU's cache instead of main memory.
BLOCK_BYTES = 8 * 2**20
#: ... but never fewer rows than this, so that each block is still a good matrix product.
MIN_BLOCK_ROWS = 64


def wanted(xp: ModuleType, positions: int, row_bytes: int) -> bool:
    """Whether the (positions x V) work of a pass is worth the block-wise path.

    Only NumPy and CuPy have the in-place bodies that make it pay; the portable path of the
    other namespaces stays as simple as the math.
    """
    return native_module(xp) is not None and positions * row_bytes > MEMORY_BUDGET_BYTES


def rows_per_block(xp: ModuleType, n: int, row_bytes: int, *, backward: bool = False) -> int:
    """Positions per block: about :data:`BLOCK_BYTES` of rows on a CPU, all of them on a GPU.

    The backward pass takes blocks up to four times larger (each block adds one
    ``h.T @ G`` product into the gradient: fewer, larger products), but never more than
    half of the positions: a block buffer as large as the (N, V) cache cannot be recycled
    by the allocator and is mapped afresh, page by page, at every step.
    """
    if native_module(xp) is not None and not is_numpy(xp):  # pragma: no cover - a GPU
        return n  # one kernel over the whole array
    step = max(MIN_BLOCK_ROWS, BLOCK_BYTES // max(1, row_bytes))
    return max(step, min(4 * step, n // 2)) if backward else step


def sequence_logps(policy: Any, batch: Any, return_cache: bool, source: tuple) -> Any:
    """:meth:`~minikto.policy.SoftmaxPolicy.sequence_logps` of a checked, flattened batch.

    ``source`` is the (prompts, responses) pair the policy was called with (for the cache).
    """
    from ..policy import _Cache  # the policy imports this module: import when first used

    xp = policy.xp
    target_logp, probs, context = target_logps(policy, batch, keep_probs=return_cache)
    out = xp.sum(xp.reshape(target_logp * batch.mask, batch.shape), axis=1)
    return (out, _Cache(batch, probs, source, context=context)) if return_cache else out


def target_logps(policy: Any, batch: Any, *, keep_probs: bool) -> tuple[Any, Any, Any]:
    """Target log-probs (N,) of a checked batch, probabilities (N, V) or None, the context."""
    xp, params, features = policy.xp, policy.params, policy.features
    n, vocab = batch.targets.shape[0], policy.vocab_size
    context = features.context(xp, params, batch.prompts, batch.states)
    step = rows_per_block(xp, n, vocab * _itemsize(policy))
    probs = xp.empty((n, vocab), dtype=policy.dtype) if keep_probs else None
    buffer = None if keep_probs else xp.empty((min(step, n), vocab), dtype=policy.dtype)
    pieces = []
    for start in range(0, n, step):
        block = slice(start, min(start + step, n))
        out = probs[block, :] if keep_probs else buffer[: block.stop - block.start, :]
        logits = features.logits_rows(xp, params, context, block, out=out)
        logits += params["bias"]
        picked, block_probs = log_softmax_at(
            logits, batch.targets[block], return_probs=keep_probs, overwrite=True
        )
        if keep_probs and block_probs is not out:  # the portable body returns a new array
            probs[block, :] = block_probs
        pieces.append(picked)
    return xp.concat(pieces) if len(pieces) > 1 else pieces[0], probs, context


def sequence_logps_backward(
    policy: Any, batch: Any, grad_logps: Any, cache: Any
) -> dict[str, Any]:
    """The gradients of ``sum_b grad_logps[b] log pi(y_b|x_b)``, block by block.

    ``grad_logps`` is checked; the cache (or None) is that of the forward pass: its
    probabilities are used, and its context when it comes from this very batch.
    """
    xp, params, features = policy.xp, policy.params, policy.features
    rows, length = batch.shape
    n, vocab = rows * length, policy.vocab_size
    probs = None if cache is None else _token_checks.cache_probs(cache, n, vocab)
    context = cache.context if cache is not None and cache.batch is batch else None
    if probs is None:
        _, probs, context = target_logps(policy, batch, keep_probs=True)
    if context is None:
        context = features.context(xp, params, batch.prompts, batch.states)
    weight = xp.reshape(grad_logps[:, None] * xp.reshape(batch.mask, (rows, length)), (-1,))
    step = rows_per_block(xp, n, vocab * _itemsize(policy), backward=True)
    buffer = None if step >= n else xp.empty((step, vocab), dtype=policy.dtype)
    grads: dict[str, Any] = {}
    for start in range(0, n, step):
        block = slice(start, min(start + step, n))
        out = None if buffer is None else buffer[: block.stop - block.start, :]
        grad_logits = softmax_grad(probs[block, :], batch.targets[block], weight[block], out=out)
        part = features.backward_rows(xp, params, grad_logits, context, block)
        part["bias"] = column_sums(grad_logits)  # d bias = sum of d logits over positions
        for name, value in part.items():  # first block: take it; then add in place
            if name in grads:
                grads[name] += value
            else:
                grads[name] = value
    return grads


def _itemsize(policy: Any) -> int:
    return 4 if policy.dtype == policy.xp.float32 else 8
