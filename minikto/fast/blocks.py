r"""The policy's forward and backward pass, block of positions by block (optional reading).

:meth:`~minikto.policy.SoftmaxPolicy.sequence_logps` and
:meth:`~minikto.policy.SoftmaxPolicy.sequence_logps_backward` are written as the math: one
(N, V) array of logits for the N = B*T positions, its log-softmax, and for the backward
``g (onehot(y) - p)``. That holds several (N, V) arrays at once, and on a CPU each of the
softmax's passes over an array larger than the cache runs at the speed of main memory.

When the (N, V) work exceeds :data:`MEMORY_BUDGET_BYTES` (:func:`pays_off`), the policy calls
the two functions below instead. They compute the same numbers (``tests/test_fast_paths.py``
checks it to 1e-12 in float64, over several blocks, on NumPy and array_api_strict):

- :func:`target_logps` computes the logits of a block of about :data:`BLOCK_BYTES` at a
  time, turns it into the target log-probabilities in place (:func:`~.kernels.log_softmax_at`)
  and keeps only those, unless the caller asks for the probabilities, which are then written
  straight into one (N, V) array;
- :func:`sequence_logps_backward` writes ``g (onehot(y) - p)`` of a block into one reused
  buffer (:func:`~.kernels.softmax_grad`) and adds the block's contribution to each gradient:
  the feature map's gradient and the bias gradient are sums over positions.

What the logits of a block are computed from, the *context*, is the ids themselves for the
tabular features and the hidden vectors ``h`` (N, d) of the embeddings; it is computed once
per batch and shared by both passes.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from ..features import DenseFeatures
from .kernels import (
    column_sums,
    log_softmax_at,
    matmul,
    native_namespace,
    scatter_add,
    softmax_grad,
)

__all__ = [
    "BLOCK_BYTES",
    "MEMORY_BUDGET_BYTES",
    "pays_off",
    "sequence_logps_backward",
    "target_logps",
]

#: Above this many bytes of (N, V) work, NumPy and CuPy take the block-wise path.
MEMORY_BUDGET_BYTES = 8 * 2**20
#: NumPy processes an (N, V) array in row blocks of about this many bytes, so that the
#: passes of the softmax over one block run in the CPU's cache instead of main memory.
BLOCK_BYTES = 8 * 2**20
#: ... but never fewer rows than this, so that each block is still a good matrix product.
MIN_BLOCK_ROWS = 64


def pays_off(xp: ModuleType, positions: int, row_bytes: int) -> bool:
    """Whether the (positions x V) work of a pass is worth the block-wise path.

    Only NumPy and CuPy have the in-place bodies that make it pay; the portable path of the
    other namespaces stays as simple as the math.
    """
    return native_namespace(xp) is not None and positions * row_bytes > MEMORY_BUDGET_BYTES


def rows_per_block(xp: ModuleType, n: int, row_bytes: int, *, backward: bool = False) -> int:
    """Positions per block: about :data:`BLOCK_BYTES` of rows on a CPU, all of them on a GPU.

    The backward pass takes blocks up to four times larger (each block adds one
    ``h.T @ G`` product into the gradient: fewer, larger products), but never more than
    half of the positions: a block buffer as large as the (N, V) cache cannot be recycled
    by the allocator and is mapped afresh, page by page, at every step.
    """
    native = native_namespace(xp)
    if native is not None and native.__name__ != "numpy":  # pragma: no cover - a GPU
        return n  # one kernel over the whole array
    step = max(MIN_BLOCK_ROWS, BLOCK_BYTES // max(1, row_bytes))
    return max(step, min(4 * step, n // 2)) if backward else step


# ------------------------------------------------------------------------------------------
# The feature map by blocks of rows


def context(features: Any, xp: ModuleType, params: dict, prompts: Any, states: Any) -> Any:
    """What the logits of every block are computed from: h (N, d), or the (prompt, state) ids."""
    if isinstance(features, DenseFeatures):
        return features.hidden(xp, params, prompts, states)
    return prompts, states


def logits_rows(
    features: Any, xp: ModuleType, params: dict, ctx: Any, rows: slice, out: Any
) -> Any:
    """The (n, V) logits of ``rows`` (before the bias); a dense product is written to ``out``."""
    if isinstance(features, DenseFeatures):
        return matmul(ctx[rows, :], params["weight"], out=out)
    prompts, states = ctx
    return features.logits(xp, params, prompts[rows], states[rows])


def backward_rows(features: Any, params: dict, grad_logits: Any, ctx: Any, rows: slice) -> dict:
    """The gradient contributions of ``rows`` (``grad_logits`` holds those rows only)."""
    if isinstance(features, DenseFeatures):
        return {"weight": ctx[rows, :].T @ grad_logits}  # h[rows].T @ G, (d, V)
    prompts, states = ctx
    return {
        "prompt": scatter_add(grad_logits, prompts[rows], features.num_prompts),
        "prev": scatter_add(grad_logits, states[rows], features.vocab_size + 1),
    }


# ------------------------------------------------------------------------------------------
# The two passes


def target_logps(policy: Any, batch: Any, *, keep_probs: bool) -> tuple[Any, Any, Any]:
    """Target log-probs (N,) of a checked batch, probabilities (N, V) or None, the context."""
    xp, params, features = policy.xp, policy.params, policy.features
    n, vocab = batch.targets.shape[0], policy.vocab_size
    ctx = context(features, xp, params, batch.prompts, batch.states)
    step = rows_per_block(xp, n, policy.row_bytes)
    probs = xp.empty((n, vocab), dtype=policy.dtype) if keep_probs else None
    buffer = None if keep_probs else xp.empty((min(step, n), vocab), dtype=policy.dtype)
    pieces = []
    for start in range(0, n, step):
        block = slice(start, min(start + step, n))
        out = probs[block, :] if keep_probs else buffer[: block.stop - block.start, :]
        logits = logits_rows(features, xp, params, ctx, block, out)
        logits += params["bias"]
        picked, block_probs = log_softmax_at(
            logits, batch.targets[block], return_probs=keep_probs, overwrite=True
        )
        if keep_probs and block_probs is not out:  # the portable body returns a new array
            probs[block, :] = block_probs
        pieces.append(picked)
    return xp.concat(pieces) if len(pieces) > 1 else pieces[0], probs, ctx


def sequence_logps_backward(
    policy: Any, batch: Any, grad_logps: Any, probs: Any, ctx: Any
) -> dict[str, Any]:
    """The gradients of ``sum_b grad_logps[b] log pi(y_b|x_b)``, block by block.

    ``probs`` (N, V) and ``ctx`` are those of the forward pass of this batch, or None.
    """
    xp, params, features = policy.xp, policy.params, policy.features
    rows, length = batch.shape
    n, vocab = rows * length, policy.vocab_size
    if probs is None:
        _, probs, ctx = target_logps(policy, batch, keep_probs=True)
    if ctx is None:
        ctx = context(features, xp, params, batch.prompts, batch.states)
    weight = xp.reshape(grad_logps[:, None] * xp.reshape(batch.mask, (rows, length)), (-1,))
    step = rows_per_block(xp, n, policy.row_bytes, backward=True)
    buffer = None if step >= n else xp.empty((step, vocab), dtype=policy.dtype)
    grads: dict[str, Any] = {}
    for start in range(0, n, step):
        block = slice(start, min(start + step, n))
        out = None if buffer is None else buffer[: block.stop - block.start, :]
        grad_logits = softmax_grad(probs[block, :], batch.targets[block], weight[block], out=out)
        part = backward_rows(features, params, grad_logits, ctx, block)
        part["bias"] = column_sums(grad_logits)  # d bias = sum of d logits over positions
        for name, value in part.items():  # first block: take it; then add in place
            if name in grads:
                grads[name] += value
            else:
                grads[name] = value
    return grads
