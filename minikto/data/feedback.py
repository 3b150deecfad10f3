r"""Feedback datasets generated from a toy task's hidden utility.

Two kinds of data, as in TRL:

- :class:`UnpairedDataset` (KTO's data): examples ``(x, y, desirable)``, a thumbs-up or a
  thumbs-down on one response;
- :class:`PairedDataset` (DPO's data): triples ``(x, y_chosen, y_rejected)``.

The samplers draw prompts uniformly from the task and responses from its base policy (or
any policy passed in), then let the hidden utility ``u(x, y)`` play the annotator.

Unpaired labels (:func:`sample_unpaired`), in this order:

1. *label*: ``rule="threshold"`` marks y desirable when ``u(x, y) > threshold`` (strictly);
   ``rule="bernoulli"`` draws ``desirable ~ Bernoulli(sigmoid(u(x, y) / temperature))``,
   a noisy annotator who is surer about extreme responses;
2. *label noise*: exactly ``round(label_noise * N)`` labels, chosen at random, are flipped
   (Python's ``round``: halves go to the even integer);
3. *imbalance*: only ``round(desirable_fraction * N_D)`` of the ``N_D`` desirable examples
   are kept, chosen at random (paper Section 5.2 keeps 10%); every undesirable one is kept.
   The dataset then holds fewer than ``n`` examples.

Paired labels (:func:`sample_paired`): two responses per prompt, ``chosen`` is the one with
the higher utility; ``label_noise`` swaps chosen and rejected in exactly
``round(label_noise * N)`` pairs.

Ties. Two responses of equal utility carry no preference. :func:`sample_paired` redraws the
second response of every tied pair (up to ``max_resamples`` rounds) and drops the pairs
still tied after that, so it may return fewer than ``n`` pairs (with the base policy of
:func:`minikto.data.toy.default_task` a tie survives 20 rounds with probability < 1e-10).

One response per prompt (paper Table 1, "one-y-per-x"). In this toy a prompt id is a
request *type*; a prompt *instance* is one draw of a prompt id, and each row of a dataset
is its own instance. ``one_per_prompt=True`` builds the paper's setting from the paired
data: it draws exactly the n instances and the two responses per instance that
``sample_paired(task, n, seed=seed)`` draws (tie redraws included; the rare pairs that
``sample_paired`` drops as still tied are kept here, a tie does not matter to one response),
keeps one of the two at random per instance and labels it by the rule. So
``unpair(sample_paired(task, n, seed=s))`` (two responses per instance) and
``sample_unpaired(task, n, seed=s, one_per_prompt=True)`` (one) can be compared on the very
same prompts and responses. Because the policy sees only the prompt id, the default
``one_per_prompt=False`` (each row a fresh instance) has the same distribution; the flag
matters for that controlled comparison.

Randomness. Everything is a function of ``seed``: a ``numpy.random.SeedSequence(seed)`` is
split into independent streams (prompts, responses, labels, noise, imbalance, which side is
kept), so changing ``label_noise`` does not change the sampled responses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from .. import _checks
from .._brief import brief
from ..backend import to_numpy
from ..policy import SoftmaxPolicy
from .responses import check_responses
from .toy import ToyTask

__all__ = ["PairedDataset", "UnpairedDataset", "sample_paired", "sample_unpaired", "unpair"]


# ------------------------------------------------------------------------------------------
# The two dataset types


@dataclass(eq=False)
class UnpairedDataset:
    """Unpaired binary feedback (TRL's ``prompt`` / ``completion`` / ``label``).

    Parameters
    ----------
    prompts : int array, shape (N,)
        Prompt ids.
    responses : int array, shape (N, T)
        Token ids, padded with -1 after each response's end.
    desirable : bool array, shape (N,)
        True = thumbs-up (desirable), False = thumbs-down.

    The arrays are copied and converted to int64 / bool NumPy arrays.
    """

    prompts: np.ndarray  #: (N,) int64
    responses: np.ndarray  #: (N, T) int64, -1 after the end
    desirable: np.ndarray  #: (N,) bool

    def __post_init__(self) -> None:
        self.prompts = _prompt_ids(self.prompts, "prompts")
        self.responses = check_responses(self.responses, "responses").copy()
        self.desirable = _bool_labels(self.desirable, "desirable")
        _same_length(self.prompts, responses=self.responses, desirable=self.desirable)

    def __len__(self) -> int:
        return int(self.prompts.shape[0])

    @property
    def num_desirable(self) -> int:
        """N_D, the number of desirable examples."""
        return int(np.sum(self.desirable))

    @property
    def num_undesirable(self) -> int:
        """N_U, the number of undesirable examples."""
        return len(self) - self.num_desirable

    def subset(self, indices: Any) -> UnpairedDataset:
        """The examples at ``indices`` (int ids in [0, N), or a bool mask of shape (N,))."""
        rows = _rows(indices, len(self))
        return UnpairedDataset(self.prompts[rows], self.responses[rows], self.desirable[rows])


@dataclass(eq=False)
class PairedDataset:
    """Paired preferences (TRL's ``prompt`` / ``chosen`` / ``rejected``).

    Parameters
    ----------
    prompts : int array, shape (N,)
    chosen : int array, shape (N, T), the preferred responses, padded with -1
    rejected : int array, shape (N, T), the dispreferred responses, padded with -1
    """

    prompts: np.ndarray  #: (N,) int64
    chosen: np.ndarray  #: (N, T) int64
    rejected: np.ndarray  #: (N, T) int64

    def __post_init__(self) -> None:
        self.prompts = _prompt_ids(self.prompts, "prompts")
        self.chosen = check_responses(self.chosen, "chosen").copy()
        self.rejected = check_responses(self.rejected, "rejected").copy()
        _same_length(self.prompts, chosen=self.chosen, rejected=self.rejected)
        if self.chosen.shape[1] != self.rejected.shape[1]:
            raise ValueError(
                f"rejected: expected width T = {self.chosen.shape[1]} like chosen; "
                f"got shape {self.rejected.shape}"
            )

    def __len__(self) -> int:
        return int(self.prompts.shape[0])

    def subset(self, indices: Any) -> PairedDataset:
        """The pairs at ``indices`` (int ids in [0, N), or a bool mask of shape (N,))."""
        rows = _rows(indices, len(self))
        return PairedDataset(self.prompts[rows], self.chosen[rows], self.rejected[rows])


def unpair(paired: PairedDataset) -> UnpairedDataset:
    """Paired -> unpaired: every chosen response desirable, every rejected one undesirable.

    Row ``2i`` is the chosen response of pair ``i`` and row ``2i + 1`` its rejected one, so
    2N examples, half of each kind.

    TRL's ``unpair_preference_dataset`` makes the same examples in another order: for each
    chunk of 1000 pairs, the 1000 chosen completions, then the 1000 rejected ones. And TRL
    0.19's ``KTOTrainer`` does not shuffle: it reads its dataset in order (a sequential
    sampler, so that each batch's mismatched pairs line up with its examples). In TRL's
    unpaired order, then, whole batches hold a single label, the reference point and the
    loss see one kind at a time, and the metrics of the missing kind are empty; shuffle the
    dataset yourself before ``KTOTrainer`` (``dataset.shuffle(seed=...)``). Here the two
    kinds alternate, so any slice taken in order holds both; minikto's training loop
    shuffles every epoch in any case.
    """
    if not isinstance(paired, PairedDataset):
        raise TypeError(f"paired: expected a PairedDataset; got {type(paired).__name__}")
    n, width = paired.chosen.shape
    responses = np.stack([paired.chosen, paired.rejected], axis=1).reshape(2 * n, width)
    desirable = np.tile(np.array([True, False]), n)
    return UnpairedDataset(np.repeat(paired.prompts, 2), responses, desirable)


# ------------------------------------------------------------------------------------------
# Samplers

_STREAMS = ("prompts", "responses", "labels", "noise", "imbalance", "side")


def sample_unpaired(
    task: ToyTask,
    n: int,
    *,
    seed: int = 0,
    rule: Literal["threshold", "bernoulli"] = "threshold",
    threshold: float = 0.0,
    temperature: float = 0.5,
    label_noise: float = 0.0,
    desirable_fraction: float = 1.0,
    one_per_prompt: bool = False,
    policy: SoftmaxPolicy | None = None,
) -> UnpairedDataset:
    """Sample n responses and label them with the hidden utility (see the module docstring).

    Parameters
    ----------
    task : ToyTask
    n : int
        How many examples are sampled and labelled (before ``desirable_fraction``).
    seed : int
        Seeds every random choice.
    rule : "threshold" or "bernoulli"
        Desirable iff ``u > threshold``, or with probability ``sigmoid(u / temperature)``.
    threshold : float
    temperature : float, > 0
        Only for ``rule="bernoulli"``.
    label_noise : float in [0, 1]
        Fraction of labels flipped: exactly ``round(label_noise * n)``.
    desirable_fraction : float in [0, 1]
        Fraction of the desirable examples kept: ``round(desirable_fraction * N_D)``.
    one_per_prompt : bool
        Take one of the two responses of each instance of ``sample_paired(task, n, seed)``.
    policy : SoftmaxPolicy, optional
        Sample responses from this policy instead of ``task.base_policy()``.

    Returns
    -------
    UnpairedDataset
        N <= n examples, in sampling order, responses of width T.
    """
    n = _count(n)
    if rule not in ("threshold", "bernoulli"):
        raise ValueError(f"rule: expected 'threshold' or 'bernoulli'; got {brief(rule)}")
    threshold = _number(threshold, "threshold")
    temperature = _number(temperature, "temperature", low=0.0, low_open=True)
    label_noise = _number(label_noise, "label_noise", low=0.0, high=1.0)
    desirable_fraction = _number(desirable_fraction, "desirable_fraction", low=0.0, high=1.0)
    if not isinstance(one_per_prompt, (bool, np.bool_)):
        raise TypeError(f"one_per_prompt: expected a bool; got {brief(one_per_prompt)}")
    policy = _sampling_policy(task, policy)
    rng = _rngs(seed)

    if one_per_prompt:
        prompts, first, second = _draw_pairs(task, policy, n, rng, max_resamples=20)
        take_first = rng["side"].random(prompts.shape[0]) < 0.5
        responses = np.where(take_first[:, None], first, second)
    else:
        prompts = rng["prompts"].integers(task.num_prompts, size=n)
        responses = _draw_responses(task, policy, prompts, rng["responses"])

    # 1. label with the hidden utility
    utility = task.utility(prompts, responses)
    if rule == "threshold":
        desirable = utility > threshold
    else:
        desirable = rng["labels"].random(utility.shape[0]) < _sigmoid(utility / temperature)
    # 2. flip exactly round(label_noise * N) labels
    flips = _choose(rng["noise"], desirable.shape[0], round(label_noise * desirable.shape[0]))
    desirable[flips] = ~desirable[flips]
    # 3. keep round(desirable_fraction * N_D) desirable examples, all undesirable ones
    keep = np.ones(desirable.shape[0], dtype=bool)
    good = np.flatnonzero(desirable)
    dropped = _choose(rng["imbalance"], good.shape[0],
                      good.shape[0] - round(desirable_fraction * good.shape[0]))
    keep[good[dropped]] = False
    return UnpairedDataset(prompts[keep], responses[keep], desirable[keep])


def sample_paired(
    task: ToyTask,
    n: int,
    *,
    seed: int = 0,
    label_noise: float = 0.0,
    max_resamples: int = 20,
    policy: SoftmaxPolicy | None = None,
) -> PairedDataset:
    """Sample two responses per prompt; the one of higher utility is ``chosen``.

    Parameters
    ----------
    task : ToyTask
    n : int
        How many prompt instances (pairs) are drawn.
    seed : int
    label_noise : float in [0, 1]
        Fraction of pairs whose chosen and rejected are swapped: exactly
        ``round(label_noise * N)`` of the N pairs returned.
    max_resamples : int, >= 0
        Rounds of redrawing the second response of tied pairs; pairs still tied are dropped.
    policy : SoftmaxPolicy, optional
        Sample from this policy instead of ``task.base_policy()``.

    Returns
    -------
    PairedDataset
        N <= n pairs with ``u(chosen) != u(rejected)`` (before noise).
    """
    n = _count(n)
    label_noise = _number(label_noise, "label_noise", low=0.0, high=1.0)
    if isinstance(max_resamples, bool) or not isinstance(max_resamples, (int, np.integer)):
        raise TypeError(f"max_resamples: expected an int >= 0; got {brief(max_resamples)}")
    if max_resamples < 0:
        raise ValueError(f"max_resamples: expected an int >= 0; got {max_resamples}")
    policy = _sampling_policy(task, policy)
    rng = _rngs(seed)
    prompts, first, second = _draw_pairs(task, policy, n, rng, max_resamples=int(max_resamples))
    u_first, u_second = task.utility(prompts, first), task.utility(prompts, second)
    untied = u_first != u_second
    prompts, first, second = prompts[untied], first[untied], second[untied]
    first_wins = (u_first > u_second)[untied]
    swap = np.zeros(prompts.shape[0], dtype=bool)
    swap[_choose(rng["noise"], swap.shape[0], round(label_noise * swap.shape[0]))] = True
    chosen_is_first = first_wins ^ swap
    chosen = np.where(chosen_is_first[:, None], first, second)
    rejected = np.where(chosen_is_first[:, None], second, first)
    return PairedDataset(prompts, chosen, rejected)


def _draw_pairs(task: ToyTask, policy: SoftmaxPolicy, n: int, rng: dict[str, Any], *,
                max_resamples: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """n prompt instances and two responses each; tied second responses are redrawn."""
    prompts = rng["prompts"].integers(task.num_prompts, size=n)
    first = _draw_responses(task, policy, prompts, rng["responses"])
    second = _draw_responses(task, policy, prompts, rng["responses"])
    for _ in range(max_resamples):
        tied = np.flatnonzero(task.utility(prompts, first) == task.utility(prompts, second))
        if tied.size == 0:
            break
        second[tied] = _draw_responses(task, policy, prompts[tied], rng["responses"])
    return prompts, first, second


def _draw_responses(task: ToyTask, policy: SoftmaxPolicy, prompts: np.ndarray,
                    rng: np.random.Generator) -> np.ndarray:
    """One response per prompt from ``policy``, as an int64 NumPy array (B, T)."""
    seed = int(rng.integers(2**63 - 1))
    out = to_numpy(policy.sample(prompts, task.max_length, seed=seed))
    return np.asarray(out, dtype=np.int64)


def _sampling_policy(task: ToyTask, policy: SoftmaxPolicy | None) -> SoftmaxPolicy:
    if not isinstance(task, ToyTask):
        raise TypeError(f"task: expected a ToyTask; got {type(task).__name__}")
    if policy is None:
        return task.base_policy()
    if not isinstance(policy, SoftmaxPolicy):
        raise TypeError(f"policy: expected a SoftmaxPolicy or None; got {type(policy).__name__}")
    _checks.same_response_space(policy, "policy", task, "the task's")
    return policy


# ------------------------------------------------------------------------------------------
# Small helpers


def _rngs(seed: int) -> dict[str, np.random.Generator]:
    """Independent generators, one per kind of random choice, all from ``seed``."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed: expected an int >= 0; got {brief(seed)}")
    if seed < 0:
        raise ValueError(f"seed: expected an int >= 0; got {seed}")
    children = np.random.SeedSequence(int(seed)).spawn(len(_STREAMS))
    pairs = zip(_STREAMS, children, strict=True)
    return {name: np.random.default_rng(child) for name, child in pairs}


def _choose(rng: np.random.Generator, population: int, count: int) -> np.ndarray:
    """``count`` distinct indices of ``range(population)``, sorted."""
    return np.sort(rng.choice(population, size=count, replace=False))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _count(n: Any) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise TypeError(f"n: expected a positive int; got {brief(n)}")
    if n < 1:
        raise ValueError(f"n: expected a positive int; got {n}")
    return int(n)


def _number(value: Any, name: str, *, low: float | None = None, high: float | None = None,
            low_open: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name}: expected a real number; got {brief(value)}")
    out = float(value)
    bad_low = low is not None and (out <= low if low_open else out < low)
    if not np.isfinite(out) or bad_low or (high is not None and out > high):
        lo = "-inf" if low is None else low
        hi = "inf" if high is None else high
        bracket = "(" if low_open else "["
        raise ValueError(f"{name}: expected a finite number in {bracket}{lo}, {hi}]; got {out}")
    return out


def _prompt_ids(prompts: Any, name: str) -> np.ndarray:
    arr = np.asarray(to_numpy(prompts))
    if arr.ndim != 1 or not (np.issubdtype(arr.dtype, np.integer) or arr.size == 0):
        raise ValueError(f"{name}: expected a 1-d int array (N,); got shape {arr.shape} "
                         f"and dtype {arr.dtype}")
    if arr.size and arr.min() < 0:
        raise ValueError(f"{name}: expected prompt ids >= 0; got {int(arr.min())}")
    return arr.astype(np.int64)


def _bool_labels(labels: Any, name: str) -> np.ndarray:
    arr = np.asarray(to_numpy(labels))
    if arr.ndim != 1 or not (arr.dtype == np.bool_ or arr.size == 0):
        raise ValueError(f"{name}: expected a 1-d bool array (True = desirable); got shape "
                         f"{arr.shape} and dtype {arr.dtype}")
    return arr.astype(bool)


def _same_length(prompts: np.ndarray, **arrays: np.ndarray) -> None:
    for name, arr in arrays.items():
        if arr.shape[0] != prompts.shape[0]:
            raise ValueError(f"{name}: expected {prompts.shape[0]} rows like prompts; "
                             f"got {arr.shape[0]}")


def _rows(indices: Any, size: int) -> np.ndarray:
    arr = np.asarray(to_numpy(indices))
    if arr.dtype == np.bool_:
        if arr.shape != (size,):
            raise ValueError(f"indices: expected a bool mask of shape ({size},); got {arr.shape}")
        return np.flatnonzero(arr)
    if arr.ndim != 1 or not (np.issubdtype(arr.dtype, np.integer) or arr.size == 0):
        raise ValueError(f"indices: expected 1-d int ids or a bool mask; got shape {arr.shape} "
                         f"and dtype {arr.dtype}")
    arr = arr.astype(np.int64)
    if arr.size and (arr.min() < 0 or arr.max() >= size):
        raise ValueError(f"indices: expected ids in [0, {size}); "
                         f"got {int(arr.min())}..{int(arr.max())}")
    return arr
