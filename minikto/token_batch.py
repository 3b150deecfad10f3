"""A batch of responses checked once: the N = B*T token positions the policy's passes read.

:meth:`minikto.policy.SoftmaxPolicy.token_batch` checks prompts and (B, T) padded responses
against the policy's response space and flattens them into a :class:`TokenBatch`;
:meth:`~minikto.policy.SoftmaxPolicy.batch_logps` and
:meth:`~minikto.policy.SoftmaxPolicy.batch_logps_backward` run on it without checking again,
and :meth:`TokenBatch.take` gives its rows (the training step's batches, the mismatched pairs
of the KL estimate) as checked batches too. :class:`PassCache` is what the backward pass
reuses from the forward pass.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from .backend import array_namespace

__all__ = ["PassCache", "TokenBatch"]


class TokenBatch(NamedTuple):
    """A batch checked once by :meth:`SoftmaxPolicy.token_batch`, flattened to N = B*T
    positions (row-major: position b*T + t). Its log-probs need no further check."""

    prompts: Any  #: (N,) the prompt id of each position
    states: Any  #: (N,) the previous token, or BOS = V at t = 0
    targets: Any  #: (N,) the token to score (0 at padding)
    mask: Any  #: (N,) 1.0 at real tokens, 0.0 at padding
    shape: tuple[int, int]  #: (B, T)
    space: tuple  #: the policy's (V, P, end token, dtype) it was checked against

    @property
    def rows(self) -> int:
        """B, the number of responses."""
        return self.shape[0]

    @property
    def positions(self) -> int:
        """N = B*T."""
        return self.shape[0] * self.shape[1]

    def take(self, index: Any, *, responses_of: Any = None) -> TokenBatch:
        """The rows ``index`` (int array (B',)) of this batch: a checked batch too.

        With ``responses_of`` (int array (B',)) row i pairs the prompt of row ``index[i]``
        with the response of row ``responses_of[i]`` (the mismatched pairs of the batch
        estimate of z0).
        """
        xp = array_namespace(self.targets)
        length = self.shape[1]
        response_rows = index if responses_of is None else responses_of

        def rows_of(flat: Any, which: Any) -> Any:
            picked = xp.take(xp.reshape(flat, self.shape), which, axis=0)
            return xp.reshape(picked, (-1,))

        return TokenBatch(
            prompts=rows_of(self.prompts, index),
            states=rows_of(self.states, response_rows),
            targets=rows_of(self.targets, response_rows),
            mask=rows_of(self.mask, response_rows),
            shape=(int(index.shape[0]), length),
            space=self.space,
        )


class PassCache(NamedTuple):
    """What the backward pass reuses from the forward pass."""

    batch: TokenBatch  #: the checked batch
    probs: Any  #: (N, V) the token probabilities
    context: Any  #: the feature map's context of the block-wise path, or None
    source: tuple = ()  #: the (prompts, responses) arrays :meth:`sequence_logps` was called with

    def made_from(self, prompts: Any, responses: Any) -> bool:
        """True when called with the same array objects as the forward pass (so the backward
        pass need not check them again)."""
        return bool(self.source) and prompts is self.source[0] and responses is self.source[1]
