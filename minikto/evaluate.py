"""Exact evaluation, which only a toy allows: no sampling, no reward model, no noise.

For every prompt the whole response space is enumerated once (a few hundred responses), the
hidden utility of each is tabulated, and a policy is scored by exact sums:

- ``expected_utility``: the mean over prompts of ``E_{y ~ pi(.|x)}[u(x, y)]``;
- ``kl_to_reference``: the mean over prompts of the exact sequence
  ``KL(pi(.|x) || pi_ref(.|x))`` (:func:`minikto.exact.exact_kl`);
- ``desirable_mass``: the mean over prompts of the probability of a response whose utility
  is above the threshold (what a thumbs-up labeller with that threshold would accept).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .backend import to_numpy
from .exact import exact_kl, response_log_probs, response_space

__all__ = ["ExactEvaluator"]


class ExactEvaluator:
    """Scores policies on a toy task exactly.

    Parameters
    ----------
    task : ToyTask
        Gives ``vocab_size``, ``num_prompts``, ``max_length``, ``eos_token`` and ``utility``.
    reference : SoftmaxPolicy
        The frozen reference the KL is measured against.
    threshold : float
        Responses with utility above it count as desirable.
    """

    def __init__(self, task: Any, reference: Any, *, threshold: float = 0.0) -> None:
        needed = ("vocab_size", "num_prompts", "max_length", "eos_token", "utility", "decode")
        missing = [name for name in needed if not hasattr(task, name)]
        if missing:
            raise TypeError(
                f"task: expected a ToyTask (with {', '.join(needed)}); got "
                f"{type(task).__name__}, which lacks {', '.join(missing)}"
            )
        if (getattr(reference, "vocab_size", None), getattr(reference, "num_prompts", None),
                getattr(reference, "eos_token", None)) != (
                task.vocab_size, task.num_prompts, task.eos_token):
            raise ValueError(
                f"reference: expected a policy of the task (V={task.vocab_size}, "
                f"P={task.num_prompts}, eos={task.eos_token}); got {reference!r}"
            )
        self.task = task
        self.reference = reference
        self.space = response_space(task.vocab_size, task.max_length, task.eos_token)  # (N, T)
        n = self.space.shape[0]
        prompts = np.repeat(np.arange(task.num_prompts), n)
        self.utility = task.utility(prompts, np.tile(self.space, (task.num_prompts, 1)))
        self.utility = self.utility.reshape(task.num_prompts, n)  # (P, N)
        self.desirable = self.utility > threshold  # (P, N)
        self.threshold = threshold

    @property
    def best_utility(self) -> float:
        """The expected utility of the best possible policy (the best response per prompt)."""
        return float(np.mean(np.max(self.utility, axis=1)))

    def response_probs(self, policy: Any) -> np.ndarray:
        """Exact probabilities (P, N) of every response of the space for every prompt."""
        logp = response_log_probs(policy, np.arange(self.task.num_prompts), self.space)
        return np.exp(to_numpy(logp).astype(np.float64))

    def __call__(self, policy: Any) -> dict[str, float]:
        """``expected_utility``, ``kl_to_reference`` and ``desirable_mass`` of ``policy``."""
        probs = self.response_probs(policy)
        prompts = np.arange(self.task.num_prompts)
        kl = to_numpy(exact_kl(policy, self.reference, prompts, self.task.max_length))
        return {
            "expected_utility": float(np.mean(np.sum(probs * self.utility, axis=1))),
            "kl_to_reference": float(np.mean(kl)),
            "desirable_mass": float(np.mean(np.sum(probs * self.desirable, axis=1))),
        }

    def top_responses(self, policy: Any, k: int = 3) -> list[list[tuple[str, float, float]]]:
        """For each prompt, the k most likely responses as (text, probability, utility)."""
        probs = self.response_probs(policy)
        out = []
        for x in range(self.task.num_prompts):
            order = np.argsort(-probs[x], kind="stable")[:k]
            out.append(
                [
                    (self.task.decode(self.space[i]), float(probs[x, i]), float(self.utility[x, i]))
                    for i in order
                ]
            )
        return out
