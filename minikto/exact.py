r"""Exact quantities that only a toy allows: the response space, sequence KL, expectations.

Because a :class:`~minikto.policy.SoftmaxPolicy` conditions only on (prompt, previous token),
its response distribution is a Markov chain over states ``{BOS, 0, ..., V-1}`` and the
sequence-level KL divergence between two such policies is a forward recursion over
positions (chain rule of KL):

.. math:: \mathrm{KL}(\pi \| \pi_{ref})(x)
          = \sum_{t=1}^{T} \sum_{s} m_t(s)\,
            \mathrm{KL}\bigl(\pi(\cdot|x,s) \,\|\, \pi_{ref}(\cdot|x,s)\bigr),

where ``m_1 = onehot(BOS)`` and ``m_{t+1}(v) = sum_s m_t(s) pi(v|x,s)`` for every token v
except the end token (a response that ended carries no further KL). The cost is
``O(T V^2)`` per prompt instead of the ``O(V^T)`` of enumeration; the tests check that both
agree.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _checks
from ._brief import brief
from .backend import log_softmax, to_numpy

__all__ = [
    "ExactEvaluator",
    "exact_kl",
    "expected_value",
    "response_log_probs",
    "response_space",
]


def response_space(vocab_size: int, length: int, eos_token: int | None = None) -> np.ndarray:
    """Every response of the policy's response space, as an int64 array (N, T) padded with -1.

    With ``eos_token=None`` these are all ``V**T`` sequences of exactly T tokens. With an
    end token they are the sequences that stop at their first end token (length 1..T) plus
    the sequences of T tokens containing no end token before position T, so their
    probabilities sum to 1.
    """
    for name, value in (("vocab_size", vocab_size), ("length", length)):
        _checks.integer(value, name, minimum=1, what="a positive int", wrong_type=ValueError)
    if eos_token is not None:
        _checks.integer(
            eos_token, "eos_token", what=f"None or an id in [0, {vocab_size})",
            wrong_type=ValueError,
        )
        if not 0 <= eos_token < vocab_size:
            raise ValueError(
                f"eos_token: expected None or an id in [0, {vocab_size}); got {brief(eos_token)}"
            )
    rows: list[list[int]] = [[]]
    done: list[list[int]] = []
    for _ in range(length):
        grown = []
        for prefix in rows:
            for v in range(vocab_size):
                if v == eos_token:
                    done.append(prefix + [v])
                else:
                    grown.append(prefix + [v])
        rows = grown
    done.extend(rows)
    out = np.full((len(done), length), -1, dtype=np.int64)
    for i, seq in enumerate(done):
        out[i, : len(seq)] = seq
    return out


def response_log_probs(policy: Any, prompts: Any, responses: np.ndarray) -> Any:
    """``log pi(y_n | x_p)`` for every prompt in ``prompts`` and every response, shape (P', N)."""
    xp = policy.xp
    prompt_ids = to_numpy(prompts).astype(np.int64)
    n = responses.shape[0]
    all_prompts = xp.asarray(np.repeat(prompt_ids, n))
    all_responses = xp.asarray(np.tile(responses, (prompt_ids.shape[0], 1)))
    logps = policy.sequence_logps(all_prompts, all_responses)
    return xp.reshape(logps, (prompt_ids.shape[0], n))


def expected_value(policy: Any, prompts: Any, responses: np.ndarray, values: Any) -> Any:
    """Exact ``E_{y ~ pi(.|x)}[values(x, y)]`` for each prompt, shape (P',).

    Parameters
    ----------
    policy : SoftmaxPolicy
    prompts : int array, shape (P',)
    responses : int array, shape (N, T): the whole response space (see :func:`response_space`)
    values : array, shape (P', N): the value of each response for each prompt
    """
    xp = policy.xp
    probs = xp.exp(response_log_probs(policy, prompts, responses))
    values = xp.asarray(to_numpy(values), dtype=policy.dtype)
    return xp.sum(probs * values, axis=1)


def exact_kl(policy: Any, reference: Any, prompts: Any, length: int) -> Any:
    """Exact sequence KL(pi(.|x) || pi_ref(.|x)) for each prompt, by the forward recursion.

    Parameters
    ----------
    policy, reference : SoftmaxPolicy
        Same vocabulary, end token and backend.
    prompts : int array, shape (P',)
    length : int
        T, the maximum response length.

    Returns
    -------
    array, shape (P',), each entry >= 0 (up to rounding).
    """
    _checks.same_response_space(reference, "reference", policy, "the policy's")
    _checks.integer(length, "length", minimum=1, what="a positive int (T)", wrong_type=ValueError)
    prompt_ids = _checks.prompt_ids(prompts, policy.num_prompts)  # int64 NumPy (P',)
    xp, v = policy.xp, policy.vocab_size
    n_prompts = prompt_ids.shape[0]
    # every (prompt, state) pair: states 0..V-1 and BOS = V
    p_ids = xp.asarray(np.repeat(prompt_ids, v + 1))
    s_ids = xp.asarray(np.tile(np.arange(v + 1), n_prompts))
    logp = xp.reshape(log_softmax(policy._logits(p_ids, s_ids)), (n_prompts, v + 1, v))
    logq = xp.reshape(log_softmax(reference._logits(p_ids, s_ids)), (n_prompts, v + 1, v))
    p = xp.exp(logp)
    step_kl = xp.sum(p * (logp - logq), axis=2)  # (P', V+1): KL of the next-token laws
    keep = np.ones(v)
    if policy.eos_token is not None:
        keep[policy.eos_token] = 0.0  # mass that emitted the end token stops here
    keep = xp.asarray(keep, dtype=policy.dtype)
    mass = xp.asarray(np.tile(np.eye(v + 1)[v], (n_prompts, 1)), dtype=policy.dtype)
    total = xp.zeros((n_prompts,), dtype=policy.dtype)
    for _ in range(length):
        total = total + xp.sum(mass * step_kl, axis=1)
        nxt = xp.squeeze(mass[:, None, :] @ p, axis=1) * keep  # (P', V)
        mass = xp.concat([nxt, xp.zeros((n_prompts, 1), dtype=policy.dtype)], axis=1)
    return total


# ------------------------------------------------------------------------------------------
# Exact evaluation of a policy on a toy task


class ExactEvaluator:
    """Scores policies on a toy task exactly: no sampling, no reward model, no noise.

    The whole response space is enumerated once per prompt (a few hundred responses) and
    the hidden utility of each is tabulated; a policy is then scored by exact sums:

    - ``expected_utility``: the mean over prompts of ``E_{y ~ pi(.|x)}[u(x, y)]``;
    - ``kl_to_reference``: the mean over prompts of the exact sequence
      ``KL(pi(.|x) || pi_ref(.|x))`` (:func:`exact_kl`);
    - ``desirable_mass``: the mean over prompts of the probability of a response whose
      utility is above the threshold (what a thumbs-up labeller with that threshold accepts).

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
        _checks.same_response_space(reference, "reference", task, "the task's")
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
