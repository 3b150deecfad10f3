r"""A finite-difference gradient checker with a report, for minikto's gradients and yours.

Central differences in float64:

.. math:: \frac{\partial f}{\partial x_k} \approx \frac{f(x + h e_k) - f(x - h e_k)}{2h},

whose truncation error is :math:`O(h^2 f''')` and whose round-off error is about
:math:`\epsilon_{mach} |f| / h`. The two balance near :math:`h \approx \epsilon^{1/3}`
(about 6e-6 in float64, times the scale of x); on minikto's objectives the error is smallest
around ``h = 5e-5`` (relative error near 1e-10), and the default ``h = 1e-6`` still gives
relative errors around 1e-9, far below the ``rtol = 1e-6`` pass mark.

Two modes:

- ``"full"``: every coordinate (2 evaluations each), with a per-block report;
- ``"directions"``: K random unit directions v, comparing the directional difference
  quotient with ``g . v`` (2K evaluations whatever the size of x: for models with a
  million parameters and more).

Errors are norm-wise: in a block (or over the K directions) the relative error is
``max|fd - g| / max(max|fd|, max|g|)``, which stays meaningful where single coordinates are
zero. A block passes when its relative error is <= ``rtol`` or its absolute error <= ``atol``
(the latter for blocks whose true gradient is zero).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import _checks
from .backend import to_numpy
from .objective import Z0_MODES, FlatObjective
from .policy import SoftmaxPolicy

__all__ = [
    "BlockReport",
    "GradcheckReport",
    "SelfcheckCase",
    "format_table",
    "gradcheck",
    "make_case",
    "run_selfcheck",
]


@dataclass
class BlockReport:
    """Errors of one parameter block (or of the set of random directions)."""

    name: str
    size: int  #: coordinates (full mode) or directions (directions mode) compared
    max_abs_error: float
    max_rel_error: float
    worst_index: int  #: index inside the block (or direction number) of the largest error
    passed: bool


@dataclass
class GradcheckReport:
    """The result of :func:`gradcheck`; ``bool(report)`` is ``report.passed``."""

    mode: str
    eps: float
    rtol: float
    atol: float
    evaluations: int
    blocks: list[BlockReport] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(b.passed for b in self.blocks)

    @property
    def max_abs_error(self) -> float:
        return max(b.max_abs_error for b in self.blocks)

    @property
    def max_rel_error(self) -> float:
        return max(b.max_rel_error for b in self.blocks)

    @property
    def worst(self) -> BlockReport:
        """The block with the largest relative error."""
        return max(self.blocks, key=lambda b: b.max_rel_error)

    def __bool__(self) -> bool:
        return self.passed

    def table(self) -> str:
        """A plain-text table, one row per block."""
        lines = [
            f"{'block':<12} {'size':>8} {'max abs err':>12} {'max rel err':>12} {'worst':>7}  ok"
        ]
        for b in self.blocks:
            lines.append(
                f"{b.name:<12} {b.size:>8} {b.max_abs_error:>12.2e} "
                f"{b.max_rel_error:>12.2e} {b.worst_index:>7}  "
                f"{'yes' if b.passed else 'NO'}"
            )
        return "\n".join(lines)


def gradcheck(
    fun: Callable[[np.ndarray], tuple[float, np.ndarray]],
    x: Any,
    *,
    mode: str = "full",
    blocks: dict[str, slice] | None = None,
    n_directions: int = 10,
    eps: float = 1e-6,
    rtol: float = 1e-6,
    atol: float = 1e-10,
    seed: int = 0,
) -> GradcheckReport:
    """Compare a hand-derived gradient with central finite differences.

    Parameters
    ----------
    fun : callable
        ``fun(x) -> (value, gradient)`` with ``x`` and ``gradient`` float64 vectors of shape
        (n,) (e.g. :class:`~minikto.objective.FlatObjective`). When ``fun`` also has a
        ``value(x)`` method, the finite differences call it (no gradient is computed there).
    x : array_like, shape (n,)
        Where to check.
    mode : "full" or "directions"
    blocks : dict name -> slice, optional
        Named parameter blocks for the report (full mode); default: one block "all".
    n_directions : int
        K, the number of random unit directions (directions mode).
    eps : float
        The step h.
    rtol, atol : float
        Pass thresholds (see the module docstring).
    seed : int
        Seeds the random directions.

    Returns
    -------
    GradcheckReport
    """
    if not callable(fun):
        raise TypeError(f"fun: expected a callable fun(x) -> (value, gradient); got {fun!r}")
    try:
        x = np.array(x, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise TypeError(f"x: expected a vector of real numbers; got {type(x).__name__}") from err
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"x: expected a non-empty 1-d vector; got shape {x.shape}")
    if mode not in ("full", "directions"):
        raise ValueError(f"mode: expected 'full' or 'directions'; got {mode!r}")
    if not eps > 0:
        raise ValueError(f"eps: expected a step > 0; got {eps}")
    rtol = _checks.scalar(rtol, "rtol", nonnegative=True)
    atol = _checks.scalar(atol, "atol", nonnegative=True)
    if mode == "directions":
        _checks.integer(n_directions, "n_directions", minimum=1, what="an int >= 1",
                        wrong_type=ValueError)
    for name, sl in (blocks or {}).items():
        if not isinstance(sl, slice) or len(range(x.size)[sl]) == 0:
            raise ValueError(
                f"blocks: expected slices that select coordinates of x (size {x.size}); "
                f"got {name!r}: {sl!r}"
            )
    out = fun(x)
    try:
        _, grad = out
    except (TypeError, ValueError):
        raise TypeError(
            f"fun: expected fun(x) to return a pair (value, gradient); got {type(out).__name__}"
        ) from None
    grad = np.asarray(grad, dtype=np.float64)
    if grad.shape != x.shape:
        raise ValueError(f"fun: expected a gradient of shape {x.shape}; got {grad.shape}")

    value_of = getattr(fun, "value", None)  # a value-only evaluation, when fun offers one

    def value(point: np.ndarray) -> float:
        return float(value_of(point) if callable(value_of) else fun(point)[0])

    report = GradcheckReport(mode=mode, eps=eps, rtol=rtol, atol=atol, evaluations=1)
    if mode == "full":
        numeric = np.empty_like(x)
        for k in range(x.size):
            step = np.zeros_like(x)
            step[k] = eps
            numeric[k] = (value(x + step) - value(x - step)) / (2 * eps)
        report.evaluations += 2 * x.size
        for name, sl in (blocks or {"all": slice(0, x.size)}).items():
            report.blocks.append(_compare(name, numeric[sl], grad[sl], rtol, atol))
    else:
        rng = np.random.default_rng(seed)
        numeric = np.empty(n_directions)
        analytic = np.empty(n_directions)
        for k in range(n_directions):
            v = rng.standard_normal(x.size)
            v /= np.linalg.norm(v)
            numeric[k] = (value(x + eps * v) - value(x - eps * v)) / (2 * eps)
            analytic[k] = grad @ v
        report.evaluations += 2 * n_directions
        report.blocks.append(_compare("directions", numeric, analytic, rtol, atol))
    return report


def _compare(
    name: str, numeric: np.ndarray, analytic: np.ndarray, rtol: float, atol: float
) -> BlockReport:
    diff = np.abs(numeric - analytic)
    scale = float(np.max(np.maximum(np.abs(numeric), np.abs(analytic))))  # NaN propagates
    max_abs = float(np.max(diff))
    max_rel = max_abs / scale if scale != 0 else 0.0  # a NaN anywhere fails both tests below
    return BlockReport(
        name=name,
        size=int(numeric.size),
        max_abs_error=max_abs,
        max_rel_error=max_rel,
        worst_index=int(np.argmax(diff)),
        passed=bool(max_rel <= rtol or max_abs <= atol),
    )


# ------------------------------------------------------------------------------------------
# The self-check: minikto checks its own objective (python -m minikto gradcheck)
#
# minikto checks itself: every z0 mode x feature map x response length, against finite
# differences. This is what ``python -m minikto gradcheck`` runs.
#
# Each case builds a random reference policy, a policy moved away from it (so the log-ratios
# and the KL are not zero and the batch estimate is not sitting on its clamp), a random batch
# with both labels, and checks the gradient of the full KTO objective coordinate by coordinate.

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
    """Check every z0 mode x {onehot, d=4} x {T=1, T=3}, then every other loss minikto trains
    (:data:`minikto.family_objective.SELFCHECK_LOSSES`, named in the z0 column); one row each."""
    from .family_objective import SELFCHECK_LOSSES, selfcheck_objective

    rows = []
    for features in ("onehot", 4):
        for length in (1, 3):
            for z0 in ALL_Z0:
                obj = make_case(z0=z0, features=features, length=length, backend=backend)
                report = gradcheck(obj, obj.x0, blocks=obj.blocks, rtol=rtol)
                rows.append(SelfcheckCase(z0=z0, features=features, length=length, report=report))
    for loss in SELFCHECK_LOSSES:
        obj = selfcheck_objective(loss, backend=backend)
        report = gradcheck(obj, obj.x0, blocks=obj.blocks, rtol=rtol)
        rows.append(SelfcheckCase(z0=loss, features="onehot", length=3, report=report))
    return rows


def format_table(rows: list[SelfcheckCase]) -> str:
    """The self-check as a plain-text table."""
    head = (
        f"{'z0 / loss':<11} {'features':<8} {'T':>2} {'params':>6} {'max abs err':>12} "
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
