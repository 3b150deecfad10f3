"""The cases of the reference vectors file: which inputs, and why each is there.

Each case is built from a few log-ratios (or token log-probabilities) chosen to pin down one
behaviour a port can get wrong. This module holds the inputs only; their outputs are computed
by :func:`minikto.tools.vectors.compute_outputs` (which imports this module, never the other
way round). The inputs are drawn from generators seeded with :data:`SEED` and a checksum of
the case's name, so adding a case never changes another.
"""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np

from ..kto import kl_estimate

__all__ = ["SEED", "cases"]

#: The seed of every case's inputs (each case mixes in a checksum of its own name).
SEED = 20240201


def _rng(name: str) -> np.random.Generator:
    return np.random.default_rng([SEED, zlib.crc32(name.encode())])


def _logps(rng: np.random.Generator, logratios: Any) -> tuple[list[float], list[float]]:
    """Sequence log-probabilities (all <= -5) whose log-ratios are about ``logratios``.

    A base value in [-40, -5] is drawn per example; the reference sits ``max(r, 0)`` below
    it and the policy ``r`` above the reference, so both stay valid log-probabilities even
    for a log-ratio of +1e4. Both are rounded to 4 decimals so the inputs read easily; they
    are exact float64 values all the same, and the outputs are computed from them.
    """
    ratios = np.asarray(logratios, dtype=np.float64)
    base = -rng.uniform(5.0, 40.0, size=ratios.shape[0])
    reference = np.round(base - np.maximum(ratios, 0.0), 4)
    policy = np.round(reference + ratios, 4)
    return [float(v) for v in policy], [float(v) for v in reference]


def _case(name: str, function: str, description: str, inputs: dict) -> dict:
    return {
        "name": name,
        "function": function,
        "description": description,
        "inputs": inputs,
    }


def _kto(
    name: str,
    description: str,
    logratios: Any,
    desirable: Any,
    *,
    z0: float,
    beta: float = 0.1,
    desirable_weight: float = 1.0,
    undesirable_weight: float = 1.0,
) -> dict:
    policy, reference = _logps(_rng(name), logratios)
    inputs = {
        "policy_logps": policy,
        "reference_logps": reference,
        "desirable": [bool(d) for d in desirable],
        "z0": float(z0),
        "beta": float(beta),
        "desirable_weight": float(desirable_weight),
        "undesirable_weight": float(undesirable_weight),
    }
    return _case(name, "kto_loss", description, inputs)


def _kto_tokens(name: str, description: str, spans: list[tuple[int, int]], width: int,
                desirable: list[bool], *, z0: float) -> dict:
    """A kto_loss case from token log-probabilities (B, width) and a completion mask.

    ``spans[i] = (prompt_tokens, completion_tokens)``: row i is masked out (False) over its
    prompt, in (True) over its completion, and out again over the padding after it. The
    masked-out positions hold ordinary log-probabilities, so a port that sums them is caught.
    """
    rng = _rng(name)
    policy = np.round(-rng.uniform(0.05, 4.0, size=(len(spans), width)), 4)
    reference = np.minimum(np.round(policy - 0.6 * rng.standard_normal(policy.shape), 4), -0.01)
    mask = np.zeros(policy.shape, dtype=bool)
    for i, (start, length) in enumerate(spans):
        mask[i, start:start + length] = True
    inputs = {
        "policy_token_logps": policy.tolist(),
        "reference_token_logps": reference.tolist(),
        "completion_mask": mask.tolist(),
        "desirable": [bool(d) for d in desirable],
        "z0": float(z0),
        "beta": 0.1,
        "desirable_weight": 1.0,
        "undesirable_weight": 1.0,
    }
    return _case(name, "kto_loss_from_token_logps", description, inputs)


def _kl(name: str, description: str, logratios: Any) -> dict:
    policy, reference = _logps(_rng(name), logratios)
    inputs = {"kl_policy_logps": policy, "kl_reference_logps": reference}
    return _case(name, "kl_estimate", description, inputs)


def _dpo(name: str, description: str, chosen: Any, rejected: Any, *, beta: float) -> dict:
    rng = _rng(name)
    pc, rc = _logps(rng, chosen)
    pr, rr = _logps(rng, rejected)
    inputs = {
        "policy_chosen_logps": pc,
        "policy_rejected_logps": pr,
        "reference_chosen_logps": rc,
        "reference_rejected_logps": rr,
        "beta": float(beta),
    }
    return _case(name, "dpo_loss", description, inputs)


def _z0(case: dict) -> float:
    """The reference point of a kl_estimate case (fed to a kto_loss case as its given z0)."""
    x = case["inputs"]
    return float(kl_estimate(np.asarray(x["kl_policy_logps"]),
                             np.asarray(x["kl_reference_logps"])).z0)


def cases() -> list[dict]:
    """Every case of the vectors file, in order (deterministic): name, function,
    description and inputs (no outputs)."""
    def normal(name: str, size: int, scale: float, shift: float = 0.0) -> np.ndarray:
        return shift + scale * _rng(name + "/ratios").standard_normal(size)

    mixed8 = [True, False, True, True, False, False, True, False]

    # 1. the reference point z0 (labels ignored, clamped at 0 after the mean)
    kl_positive = _kl(
        "kl_positive",
        "Mean mismatched log-ratio > 0: z0 is that mean, dz0/d kl_policy_logps = 1/B.",
        normal("kl_positive", 8, 1.0, shift=1.5),
    )
    kl_clamped = _kl(
        "kl_clamped",
        "Mean mismatched log-ratio < 0: z0 is clamped to 0 and its gradient is 0.",
        normal("kl_clamped", 8, 1.0, shift=-1.5),
    )
    kl_at_zero = _kl(
        "kl_at_zero",
        "Policy == reference, the mean is exactly 0: z0 = 0 and the gradient PASSES (1/B), "
        "the convention of where(m >= 0, m, 0) (torch.clamp(min=0), relu and maximum "
        "differ here: see conventions).",
        np.zeros(6),
    )
    cases = [kl_positive, kl_clamped, kl_at_zero]

    # 2. the KTO loss (z0 given, detached)
    cases += [
        _kto(
            "kto_at_initialisation",
            "Policy == reference and z0 = 0: every loss is 1/2, the loss is 0.5 and "
            "|grad| = beta/(4B) for every example.",
            np.zeros(8),
            mixed8,
            z0=0.0,
        ),
        _kto(
            "kto_mixed",
            "A mixed batch of 8 at the defaults (beta 0.1, weights 1) with z0 = 0.37.",
            normal("kto_mixed", 8, 3.0),
            mixed8,
            z0=0.37,
        ),
        _kto(
            "kto_only_desirable",
            "Every example desirable (no undesirable one in the batch).",
            normal("kto_only_desirable", 6, 3.0),
            [True] * 6,
            z0=0.2,
        ),
        _kto(
            "kto_only_undesirable",
            "Every example undesirable (no desirable one in the batch).",
            normal("kto_only_undesirable", 6, 3.0),
            [False] * 6,
            z0=0.2,
        ),
        _kto(
            "kto_z0_clamped",
            "z0 = 0 taken from case kl_clamped (the estimate was clamped).",
            normal("kto_z0_clamped", 8, 3.0),
            mixed8,
            z0=_z0(kl_clamped),
        ),
        _kto(
            "kto_z0_positive",
            "z0 > 0 taken from case kl_positive.",
            normal("kto_z0_positive", 8, 3.0, shift=1.5),
            mixed8,
            z0=_z0(kl_positive),
        ),
        _kto(
            "kto_saturated",
            "beta = 1 and |z| from 40 to 1e4 on both sides: losses are ~0 or ~weight and the "
            "gradients underflow towards 0 (exactly 0 once |z| > ~745). A port must not give "
            "inf or NaN here.",
            [40.0, -40.0, 800.0, -800.0, 1e4, -1e4, 40.0, -1e4],
            [True, True, True, True, True, False, False, False],
            z0=0.0,
            beta=1.0,
        ),
        _kto(
            "kto_extreme_weights",
            "desirable_weight = 13.33 (paper Eq. 8 with 10% of the desirable data kept) and "
            "undesirable_weight = 0: undesirable examples cost nothing and get no gradient.",
            normal("kto_extreme_weights", 8, 3.0),
            mixed8,
            z0=0.1,
            desirable_weight=13.33,
            undesirable_weight=0.0,
        ),
        _kto(
            "kto_imbalanced",
            "1 desirable example out of 10 with desirable_weight = 13.33, undesirable_weight = 1.",
            normal("kto_imbalanced", 10, 3.0),
            [True] + [False] * 9,
            z0=0.25,
            desirable_weight=13.33,
        ),
        _kto(
            "kto_tiny_beta",
            "beta = 1e-6: every loss is within ~1e-5 of weight/2 and |grad| ~ beta/(4B).",
            normal("kto_tiny_beta", 8, 5.0),
            mixed8,
            z0=0.5,
            beta=1e-6,
        ),
        _kto(
            "kto_large_beta",
            "beta = 1e3 with log-ratios of 1e-3 to 1: |z| from ~1 to ~1e3, from the slope of "
            "the sigmoid to full saturation.",
            [1e-3, -1e-3, 0.01, -0.01, 0.05, -0.05, 1.0, -1.0],
            [True, True, False, False, True, False, True, False],
            z0=0.0,
            beta=1e3,
        ),
        _kto(
            "kto_batch_of_one",
            "B = 1 (allowed by the loss; only the z0 estimate needs B >= 2).",
            [0.8],
            [False],
            z0=0.3,
        ),
    ]

    # 3. from token log-probabilities: the sum over the completion's tokens
    cases.append(
        _kto_tokens(
            "kto_tokens_summed",
            "Token log-probabilities (B, L) with TRL's completion mask (False over the prompt "
            "and the padding): policy_logps and reference_logps are the SUMS over the "
            "completion's tokens. A port that averages the tokens, or ignores the mask, "
            "disagrees on every output; grad_policy_token_logps is grad_policy_logps[i] on "
            "the completion's tokens and 0 elsewhere.",
            [(2, 5), (3, 1), (1, 3), (2, 4)],
            7,
            [True, False, True, False],
            z0=0.15,
        )
    )

    # 4. DPO (paired)
    cases += [
        _dpo(
            "dpo_policy_equals_reference",
            "Policy == reference: every margin is 0 and every loss is log 2.",
            np.zeros(6),
            np.zeros(6),
            beta=0.1,
        ),
        _dpo(
            "dpo_mixed",
            "8 pairs at beta = 0.1, some ordered right and some wrong.",
            normal("dpo_mixed/chosen", 8, 3.0),
            normal("dpo_mixed/rejected", 8, 3.0),
            beta=0.1,
        ),
        _dpo(
            "dpo_saturated",
            "beta = 1 and margins of +-40, +-800, +-2e4: a wrong pair's loss is ~|margin| "
            "with weight 1, a right pair's loss and gradient underflow to 0. "
            "log(sigmoid(h)) computed naively gives -inf here.",
            [20.0, -20.0, 400.0, -400.0, 1e4, -1e4],
            [-20.0, 20.0, -400.0, 400.0, -1e4, 1e4],
            beta=1.0,
        ),
        _dpo(
            "dpo_tiny_beta",
            "beta = 1e-6: every loss is within ~1e-5 of log 2.",
            normal("dpo_tiny_beta/chosen", 8, 5.0),
            normal("dpo_tiny_beta/rejected", 8, 5.0),
            beta=1e-6,
        ),
        _dpo(
            "dpo_large_beta",
            "beta = 1e3 with margins of 1e-3 to 1: from the slope of the sigmoid to saturation.",
            [1e-3, -1e-3, 0.02, -0.02, 1.0, -1.0],
            [0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
            beta=1e3,
        ),
        _dpo(
            "dpo_batch_of_one",
            "B = 1.",
            [0.5],
            [1.5],
            beta=0.1,
        ),
    ]
    return cases
