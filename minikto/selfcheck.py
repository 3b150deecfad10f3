"""minikto checks itself: every z0 mode x feature map x response length, against finite
differences. This is what ``python -m minikto gradcheck`` runs.

Each case builds a random reference policy, a policy moved away from it (so the log-ratios
and the KL are not zero and the batch estimate is not sitting on its clamp), a random batch
with both labels, and checks the gradient of the full KTO objective coordinate by coordinate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .backend import to_numpy
from .gradcheck import GradcheckReport, gradcheck
from .objective import Z0_MODES, FlatObjective
from .policy import SoftmaxPolicy

__all__ = ["SelfcheckCase", "format_table", "make_case", "run_selfcheck"]

#: Every reference-point mode, the fixed-number mode represented by 0.3.
ALL_Z0 = (*Z0_MODES, 0.3)


@dataclass
class SelfcheckCase:
    """One row of the self-check table."""

    z0: str | float
    features: str | int
    length: int
    report: GradcheckReport


def make_case(
    *,
    z0: str | float = "batch",
    features: str | int = "onehot",
    length: int = 3,
    batch_size: int = 6,
    vocab_size: int = 5,
    num_prompts: int = 3,
    backend: str = "numpy",
    seed: int = 0,
    beta: float = 0.5,
    desirable_weight: float = 1.3,
    undesirable_weight: float = 0.8,
) -> FlatObjective:
    """A random batch objective for checking (float64).

    With ``length == 1`` the response space is single tokens with no end token (the bandit
    case); otherwise token 0 is an end token and responses are padded after it.
    """
    rng = np.random.default_rng(seed)
    eos = None if length == 1 else 0
    common = dict(features=features, backend=backend, dtype="float64", eos_token=eos)
    reference = SoftmaxPolicy(vocab_size, num_prompts, seed=seed, **common).copy()
    policy = SoftmaxPolicy(vocab_size, num_prompts, seed=seed + 1000, **common)
    prompts = rng.integers(0, num_prompts, batch_size)
    # responses from the policy: the mismatched log-ratios then average a positive KL-like
    # quantity, so the batch estimate is not clamped and "batch-grad" really differs
    responses = to_numpy(policy.sample(policy.xp.asarray(prompts), length, seed=seed))
    desirable = np.arange(batch_size) % 2 == 0
    rng.shuffle(desirable)
    xp = policy.xp
    return FlatObjective(
        policy,
        reference,
        xp.asarray(prompts),
        xp.asarray(responses),
        xp.asarray(desirable),
        z0=z0,
        beta=beta,
        desirable_weight=desirable_weight,
        undesirable_weight=undesirable_weight,
        max_length=length,
    )


def run_selfcheck(backend: str = "numpy", *, rtol: float = 1e-6) -> list[SelfcheckCase]:
    """Check every z0 mode x {onehot, d=4} x {T=1, T=3}; return one row per case."""
    rows = []
    for features in ("onehot", 4):
        for length in (1, 3):
            for z0 in ALL_Z0:
                obj = make_case(z0=z0, features=features, length=length, backend=backend)
                report = gradcheck(obj, obj.x0, blocks=obj.blocks, rtol=rtol)
                rows.append(SelfcheckCase(z0=z0, features=features, length=length, report=report))
    return rows


def format_table(rows: list[SelfcheckCase]) -> str:
    """The self-check as a plain-text table."""
    head = (
        f"{'z0 mode':<11} {'features':<8} {'T':>2} {'params':>6} {'max abs err':>12} "
        f"{'max rel err':>12} {'worst block':<11}  ok"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        rep: Any = r.report
        n = sum(b.size for b in rep.blocks)
        lines.append(
            f"{str(r.z0):<11} {str(r.features):<8} {r.length:>2} {n:>6} "
            f"{rep.max_abs_error:>12.2e} {rep.max_rel_error:>12.2e} {rep.worst.name:<11}  "
            f"{'yes' if rep.passed else 'NO'}"
        )
    return "\n".join(lines)
