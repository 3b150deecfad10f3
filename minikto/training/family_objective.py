"""The family's losses as functions of the policy's flat parameters, for the gradient self-check.

:class:`FamilyObjective` is to the losses of :mod:`minikto.training.family_step` (TRL's 13 DPO
loss types, SimPO, ORPO, BCO) what :class:`~minikto.objective.FlatObjective` is to KTO:
``obj(theta) -> (loss, grad)`` through the very training step, log-probs (sums or per-token
means) and backward pass included. :data:`SELFCHECK_LOSSES` lists the losses that
``python -m minikto gradcheck`` checks this way, one row each, beside KTO's reference-point
modes (:func:`family_selfcheck`); :func:`selfcheck_objective` builds the random case of a row.

BCO's ``delta`` (``bco``, ``bco_pair``) is detached by definition: the objective holds it at its
value at ``x0``, so that finite differences measure exactly what the detached gradient claims.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..gradcheck import SelfcheckCase, gradcheck
from ..pairwise import PAIRWISE_LOSS_TYPES
from ..policy import SoftmaxPolicy

__all__ = ["SELFCHECK_LOSSES", "FamilyObjective", "family_selfcheck", "selfcheck_objective"]

#: The losses of the self-check table beside KTO (every loss minikto trains besides KTO's modes).
SELFCHECK_LOSSES = ("dpo", *PAIRWISE_LOSS_TYPES, "simpo", "orpo", "bco", "apo_zero_unpaired", "sft")


class _PinnedDelta:
    """A stand-in for the running reward mean that always answers the same delta."""

    def __init__(self, delta: float) -> None:
        self.mean = delta

    def update(self, rewards: Any) -> float:
        return self.mean


class FamilyObjective:
    """One batch's loss ``config.loss`` as a function of one flat float64 parameter vector.

    Parameters
    ----------
    policy, reference : SoftmaxPolicy
        The policy is copied; the caller's policy is never modified.
    arrays : dict
        ``prompts``, ``chosen``, ``rejected`` (paired losses) or ``prompts``, ``responses``,
        ``desirable`` (unpaired), on the policy's backend.
    config : KTOConfig
        ``config.loss`` and ``config.beta`` are used.
    """

    def __init__(self, policy: Any, reference: Any, arrays: dict, config: Any) -> None:
        from .family_step import RewardMean

        self.policy, self.reference = policy.copy(frozen=False), reference
        self.config, self.arrays = config, arrays
        sides = [k for k in ("chosen", "rejected", "responses") if k in arrays]
        self.reference_logps = {
            s: reference.sequence_logps(arrays["prompts"], arrays[s]) for s in sides
        }
        self.x0 = self.policy.get_flat()
        self.blocks = self.policy.param_slices()
        running = RewardMean()
        self._step(self.x0, running)  # the delta a run would use at x0 ...
        self._delta = _PinnedDelta(running.mean)  # ... held fixed (it is detached)

    def _step(self, theta: np.ndarray, running: Any) -> Any:
        from .family_step import FAMILY_LOSSES, family_step
        from .step import paired_step, unpaired_step

        self.policy.set_flat(np.asarray(theta, dtype=np.float64))
        a, r, config = self.arrays, self.reference_logps, self.config
        if config.loss in FAMILY_LOSSES:
            return family_step(self.policy, a, r, config, running)
        tokens = {s: self.policy.token_batch(a["prompts"], a[s]) for s in r}
        if "chosen" in a:
            return paired_step(
                self.policy,
                tokens["chosen"],
                tokens["rejected"],
                r["chosen"],
                r["rejected"],
                config,
            )
        return unpaired_step(
            self.policy,
            self.reference,
            tokens["responses"],
            a["desirable"],
            r["responses"],
            config,
        )

    def __call__(self, theta: np.ndarray) -> tuple[float, np.ndarray]:
        result = self._step(theta, self._delta)
        return result.loss, self.policy.flatten_grads(result.grads)


def selfcheck_objective(
    loss: str, *, backend: str = "numpy", seed: int = 0, length: int = 3, beta: float = 0.5
) -> FamilyObjective:
    """The random case of one self-check row: a policy moved away from its reference, a batch
    of 6 pairs (or 6 unpaired examples) sampled from the policy, responses of up to T tokens
    ending at token 0, float64."""
    from .config import PAIRED_LOSSES, KTOConfig

    common = dict(backend=backend, dtype="float64", eos_token=0)
    reference = SoftmaxPolicy(5, 3, seed=seed, **common).copy()
    policy = SoftmaxPolicy(5, 3, seed=seed + 1000, **common)
    xp, rng = policy.xp, np.random.default_rng(seed)
    prompts = xp.asarray(rng.integers(0, 3, 6))
    first = policy.sample(prompts, length, seed=seed)
    second = policy.sample(prompts, length, seed=seed + 1)
    if loss in PAIRED_LOSSES:
        arrays = {"prompts": prompts, "chosen": first, "rejected": second}
    else:
        desirable = xp.asarray(np.arange(6) % 2 == 0)
        arrays = {"prompts": prompts, "responses": first, "desirable": desirable}
    return FamilyObjective(policy, reference, arrays, KTOConfig(loss=loss, beta=beta))


def family_selfcheck(backend: str = "numpy", *, rtol: float = 0.0) -> list[SelfcheckCase]:
    """One self-check row per loss of :data:`SELFCHECK_LOSSES` (named in the z0 column), after
    :func:`minikto.gradcheck.run_selfcheck`'s rows of KTO's reference-point modes."""
    rows = []
    for loss in SELFCHECK_LOSSES:
        obj = selfcheck_objective(loss, backend=backend)
        report = gradcheck(obj, obj.x0, blocks=obj.blocks, rtol=rtol)
        rows.append(SelfcheckCase(z0=loss, features="onehot", length=3, report=report))
    return rows
