"""The memory a run needs, estimated before anything is allocated.

A size flag can ask for more memory than the machine has (``--n 100000000000``,
``--features 1000000000``); NumPy would then fail deep inside with an ``_ArrayMemoryError``
traceback, after minutes of work. :func:`check_memory` estimates the bytes of the large arrays
a run holds at once, and refuses with the estimate and the flag that drives it when it
exceeds the machine's physical memory.

The estimates count float64 and int64 arrays (8 bytes an entry) with a margin for the
working copies:

- data: ``N`` examples of a prompt id, ``T`` token ids and a label (paired: two responses),
  held about :data:`DATA_COPIES` times (sampling, the arrays, the reference's log-probs,
  batches);
- embeddings of width ``d`` (``features=d``): fixed tables of ``(P + V + 1) x d`` and a
  trainable ``d x V`` layer, in the policy, the reference, the gradient and Adam's two
  moments (:data:`PARAM_COPIES` copies), plus the ``(B T) x d`` activations of a batch.
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["DATA_COPIES", "PARAM_COPIES", "MemoryEstimateError", "check_memory",
           "physical_memory"]

#: Working copies of the data arrays a run holds at once (a margin, not a measurement).
DATA_COPIES = 8
#: Copies of the parameters: policy, reference, SFT start, gradient, Adam's m and v, update.
PARAM_COPIES = 8


class MemoryEstimateError(ValueError):
    """A run would need more memory than the machine has."""


def physical_memory() -> int:
    """The machine's physical memory in bytes (64 GiB where the system does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # pragma: no cover - not POSIX
        return 64 << 30


def _gib(nbytes: float) -> str:
    return f"{nbytes / (1 << 30):.3g} GiB"


def check_memory(
    task: Any,
    *,
    n: int | None = None,
    paired: bool = False,
    features: Any = "onehot",
    batch_size: int = 32,
    n_flag: str = "n",
    features_flag: str = "features",
) -> int:
    """Refuse a run whose estimated memory exceeds the machine's; return the estimate.

    Parameters
    ----------
    task : ToyTask
        Gives the vocabulary size ``V``, prompts ``P`` and the response length ``T``.
    n : int, optional
        Examples (pairs when ``paired``) about to be sampled or read; None: already in memory.
    features : "onehot" or int
        The policy's features (a width ``d`` for embeddings).
    batch_size : int
    n_flag, features_flag : str
        The names of the flags (or arguments) in the error.

    Raises
    ------
    MemoryEstimateError
        Naming the flag with the larger share, the estimate and the machine's memory.
    """
    v, p, t = task.vocab_size, task.num_prompts, task.max_length
    parts = {}
    if n is not None:
        per_example = 8 * ((2 * t if paired else t) + 1) + 1
        parts[n_flag] = (DATA_COPIES * n * per_example, f"{n} examples")
    if isinstance(features, int) and not isinstance(features, bool):
        d = features
        params = (p + 2 * v + 1) * d * 8
        parts[features_flag] = (PARAM_COPIES * params + 4 * batch_size * t * d * 8,
                                f"embeddings of width {d}")
    total = sum(nbytes for nbytes, _ in parts.values())
    limit = physical_memory()
    if total > limit:
        flag, (nbytes, what) = max(parts.items(), key=lambda kv: kv[1][0])
        raise MemoryEstimateError(
            f"{flag}: {what} need about {_gib(nbytes)} of memory (the run about "
            f"{_gib(total)}), more than this machine's {_gib(limit)}; lower {flag}"
        )
    return total
