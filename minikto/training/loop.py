"""The optimizer loop, shared by training and by the SFT that makes a reference.

:class:`Batches` holds the data on the policy's backend and the reference's log-probs (once
for the whole dataset) and runs the step of a given batch; :func:`optimize` takes the steps:
forward, loss and backward, the gradient norm, a stop at the first non-finite loss,
gradient or optimizer state (naming the knob most likely to blame), the update, and a hook.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from .. import _checks
from ..data.feedback import PairedDataset
from ..objective import check_max_length
from .config import KTOConfig
from .family_step import FAMILY_LOSSES, RewardMean, family_step
from .optim import NonFiniteError
from .step import StepResult, paired_step, unpaired_step

__all__ = ["Batches", "batch_indices", "optimize", "likely_cause"]


def batch_indices(num_examples: int, batch_size: int, seed: int, step: int) -> np.ndarray:
    """The example indices of batch number ``step`` (0-based), a pure function of its inputs.

    Epoch ``e`` shuffles the data with ``numpy.random.default_rng([seed, e])`` and cuts the
    permutation into ``max(1, N // batch_size)`` nearly equal batches.
    """
    _checks.at_least_two_examples(num_examples, "data", where=" per batch", detail=" in all")
    per_epoch = max(1, num_examples // batch_size)
    epoch, position = divmod(step, per_epoch)
    order = np.random.default_rng([seed, epoch]).permutation(num_examples)
    return np.array_split(order, per_epoch)[position]


class Batches:
    """The data on the policy's backend and the reference's log-probs, cut into batches."""

    def __init__(self, reference: Any, data: Any, task: Any, seed: int, max_length: Any) -> None:
        xp = reference.xp
        self.paired = isinstance(data, PairedDataset)
        names = ("prompts", "chosen", "rejected") if self.paired else (
            "prompts", "responses", "desirable")
        arrays = {n: xp.asarray(np.asarray(getattr(data, n))) for n in names}
        # checked once, here: every step takes rows of these checked batches
        responses = names[1:] if self.paired else ("responses",)
        self.tokens = {n: reference.token_batch(arrays["prompts"], arrays[n]) for n in responses}
        if max_length is not None:
            for batch in self.tokens.values():
                check_max_length(batch, max_length, xp)
        self.desirable = None if self.paired else arrays["desirable"]
        self.arrays = arrays  # the family's losses take rows of the raw arrays (family_step)
        if self.paired:
            self.ref = {n: reference.batch_logps(b) for n, b in self.tokens.items()}
        elif task is None:  # SFT towards a reference: its log-probs play no part
            self.ref = {"responses": xp.zeros(arrays["prompts"].shape, dtype=reference.dtype)}
        else:
            self.ref = {"responses": reference.batch_logps(self.tokens["responses"])}
        self.xp, self.n, self.seed, self.max_length = xp, len(data), seed, max_length
        self.reward_mean = RewardMean()  # BCO's running delta (bco, bco_pair)

    def step(self, policy: Any, reference: Any, config: KTOConfig, step: int) -> StepResult:
        """Forward, loss and backward on the batch of optimizer step ``step`` (0-based)."""
        xp = self.xp
        ix = xp.asarray(batch_indices(self.n, config.batch_size, self.seed, step))
        t = {k: v.take(ix) for k, v in self.tokens.items()}
        r = {k: xp.take(v, ix, axis=0) for k, v in self.ref.items()}
        if config.loss in FAMILY_LOSSES:
            a = {k: xp.take(v, ix, axis=0) for k, v in self.arrays.items()}
            return family_step(policy, a, r, config, self.reward_mean)
        if self.paired:
            return paired_step(policy, t["chosen"], t["rejected"], r["chosen"], r["rejected"],
                               config)
        desirable = xp.take(self.desirable, ix, axis=0)
        return unpaired_step(policy, reference, t["responses"], desirable, r["responses"],
                             config, max_length=self.max_length)


def optimize(
    policy: Any,
    reference: Any,
    batches: Batches,
    config: KTOConfig,
    optimizer: Any,
    steps: Iterable[int],
    after: Callable[[int, StepResult, float], None] | None = None,
) -> None:
    """The optimizer steps ``steps`` (0-based); ``after(done, result, grad_norm)`` follows each."""
    for step in steps:
        with np.errstate(over="ignore", invalid="ignore"):  # a non-finite value stops the run
            result = batches.step(policy, reference, config, step)
            norm = math.sqrt(sum(float(policy.xp.sum(g * g)) for g in result.grads.values()))
        try:
            if not (math.isfinite(result.loss) and math.isfinite(norm)):
                what = "loss" if not math.isfinite(result.loss) else "gradient norm"
                value = result.loss if what == "loss" else norm
                raise NonFiniteError(f"the {what} is {value}")
            with np.errstate(over="ignore", invalid="ignore"):
                optimizer.step(policy.params, result.grads)
        except NonFiniteError as err:
            raise NonFiniteError(
                f"step {step + 1}: {err}; the run stopped there. {likely_cause(config)}"
            ) from None
        if after is not None:
            after(step + 1, result, norm)


def likely_cause(config: KTOConfig) -> str:
    """The knob most likely to blame for a non-finite step: the largest against its default."""
    defaults = KTOConfig()
    ratios = {
        name: abs(float(getattr(config, name))) / float(getattr(defaults, name))
        for name in ("beta", "desirable_weight", "undesirable_weight", "learning_rate")
    }
    name = max(ratios, key=lambda k: ratios[k])
    if ratios[name] <= 1e3:
        name = "learning_rate"
    return f"Lower {name} (now {getattr(config, name):g})."
