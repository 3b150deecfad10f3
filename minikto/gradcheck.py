r"""A finite-difference gradient checker whose pass mark comes from an error analysis.

Central differences in float64 along a unit direction :math:`d` (a coordinate, or a random
direction):

.. math:: D(h) = \frac{f(x + h d) - f(x - h d)}{2h}
          = \nabla f \cdot d + \frac{h^2}{6} f'''(\xi) + \text{round-off}.

A hand-derived gradient :math:`g` passes where :math:`|D(h) - g \cdot d|` is within the
error that :math:`D(h)` itself can have at the values at hand (docs/CHECK.md, "The
tolerance rule"):

- **round-off**: one evaluation of :math:`f` is off by about
  :math:`\epsilon\,(|f| + \sum_j |x_j g_j|)` (the rounding of the value, and of every input
  carried through the condition of :math:`f`), :math:`\epsilon = 2^{-52}`, times
  :data:`ROUNDING`; the difference quotient divides that by :math:`h`;
- **truncation**: :math:`\frac{h^2}{6} |f'''|`, measured with two more evaluations as
  :math:`|D(2h) - D(h)| / 3`, for a direction the round-off bound alone does not pass.

A caller may add a floor: ``rtol`` times the block's largest gradient entry, or ``atol``
(both 0 by default). Two modes: ``"full"`` (every coordinate, a per-block report) and
``"directions"`` (K random unit directions, comparing :math:`D(h)` with :math:`g \cdot v`:
about 2K evaluations whatever the size of x).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import _checks
from ._brief import brief
from .backend import to_numpy
from .objective import Z0_MODES, FlatObjective
from .policy import SoftmaxPolicy

__all__ = [
    "EPSILON",
    "NOISE",
    "ROUNDING",
    "BlockReport",
    "GradcheckReport",
    "RoundingNoise",
    "SelfcheckCase",
    "difference_quotient",
    "format_table",
    "gradcheck",
    "make_case",
    "run_selfcheck",
]

#: The float64 machine epsilon, 2**-52.
EPSILON = float(np.finfo(np.float64).eps)
#: How many units of ``EPSILON * (|f| + sum |x g|)`` one evaluation of f may be off by
#: (docs/CHECK.md gives the measurement behind it).
ROUNDING = 16.0
#: How many measured standard deviations of f's rounding noise one evaluation may be off by.
NOISE = 6.0


@dataclass
class BlockReport:
    """Errors of one parameter block (or of the set of random directions)."""

    name: str
    size: int  #: coordinates (full mode) or directions (directions mode) compared
    max_abs_error: float
    max_rel_error: float
    worst_index: int  #: index inside the block (or direction number) of the largest error
    passed: bool
    #: the largest ratio |fd - g| / (allowed error) over the block: <= 1 passes
    error_to_bound: float = 0.0


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
        """A plain-text table, one row per block (``err/bound`` <= 1 passes)."""
        lines = [
            f"{'block':<12} {'size':>8} {'max abs err':>12} {'max rel err':>12} "
            f"{'err/bound':>10} {'worst':>7}  ok"
        ]
        for b in self.blocks:
            lines.append(
                f"{b.name:<12} {b.size:>8} {b.max_abs_error:>12.2e} "
                f"{b.max_rel_error:>12.2e} {b.error_to_bound:>10.2e} {b.worst_index:>7}  "
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
    rtol: float = 0.0,
    atol: float = 0.0,
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
        Optional floors under the error bound of the module docstring: an entry also passes
        when its error is <= ``rtol * max|g|`` of its block, or <= ``atol``. Default 0: the
        error bound alone decides.
    seed : int
        Seeds the random directions.

    Returns
    -------
    GradcheckReport
    """
    x, rtol, atol = _check_arguments(fun, x, mode, blocks, n_directions, eps, rtol, atol)
    value0, grad = _value_and_gradient(fun, x)

    value = _Counted(fun)

    if mode == "full":
        directions, analytic = np.eye(x.size), grad
        named = blocks or {"all": slice(0, x.size)}
    else:
        rng = np.random.default_rng(seed)
        directions = rng.standard_normal((n_directions, x.size))
        directions /= np.linalg.norm(directions, axis=1, keepdims=True)
        analytic = directions @ grad
        named = {"directions": slice(0, n_directions)}
    condition = abs(value0) + float(np.sum(np.abs(x * grad)))  # |f| + sum_j |x_j g_j|
    numeric, bound = np.empty(analytic.size), np.empty(analytic.size)
    noise = RoundingNoise(value, x, eps, seed)
    for k, d in enumerate(directions):
        numeric[k], bound[k] = difference_quotient(
            value, x, d, eps, condition=condition, expected=analytic[k], noise=noise
        )
    report = GradcheckReport(mode=mode, eps=eps, rtol=rtol, atol=atol,
                             evaluations=1 + value.calls)
    for name, sl in named.items():
        report.blocks.append(_compare(name, numeric[sl], analytic[sl], bound[sl], rtol, atol))
    return report


def difference_quotient(
    value: Callable[[np.ndarray], float],
    x: np.ndarray,
    direction: np.ndarray,
    h: float,
    *,
    condition: float = 0.0,
    expected: float | None = None,
    noise: Callable[[], float] | None = None,
) -> tuple[float, float]:
    r"""The central difference ``D(h)`` along ``direction`` and the error it can have.

    The round-off bound is ``ROUNDING * EPSILON * max(condition, |f(x +- h d)|) / h`` with
    ``condition = |f(x)| + sum_j |x_j g_j|``. Unless ``expected`` is given and lies within
    it, two more terms are measured: the truncation error :math:`|D(2h) - D(h)| / 3` (two
    more evaluations; :math:`D(2h) - D(h) = \frac{h^2}{2} f''' + O(h^4)`), and the
    round-off of f itself, ``NOISE * noise() / h`` (``noise()``: the measured standard
    deviation of f's rounding near x, see :class:`RoundingNoise`), which replaces the first
    bound when larger.
    """
    up, down = value(x + h * direction), value(x - h * direction)
    quotient = (up - down) / (2 * h)
    roundoff = ROUNDING * EPSILON * max(condition, abs(up), abs(down)) / h
    if expected is not None and abs(quotient - expected) <= roundoff:
        return quotient, roundoff
    wide = (value(x + 2 * h * direction) - value(x - 2 * h * direction)) / (4 * h)
    measured = NOISE * noise() / h if noise is not None else 0.0
    return quotient, max(roundoff, measured) + abs(wide - quotient) / 3


class RoundingNoise:
    r"""The rounding noise of f near x, measured once, and only when needed.

    Along eight random unit directions v, f is evaluated at ``x + j h v`` for j = -3..3; the
    sixth difference of those seven values cancels the smooth part up to
    :math:`h^6 f^{(6)}` and leaves the rounding noise, of variance
    :math:`\binom{12}{6} \sigma^2 = 924 \sigma^2` for independent roundings of standard
    deviation :math:`\sigma` (the difference table of Moré and Wild, "Estimating
    computational noise", SIAM J. Sci. Comput. 2011). Calling it returns the estimate of
    :math:`\sigma` from the eight, or half the resolution of f where f is constant at the
    step h (a gradient below that resolution cannot be seen by differences).
    """

    def __init__(self, value: Callable[[np.ndarray], float], x: np.ndarray, h: float,
                 seed: int) -> None:
        self.value, self.x, self.h, self.seed = value, x, h, seed
        self.sigma: float | None = None

    def __call__(self) -> float:
        if self.sigma is None:
            rng = np.random.default_rng([20240204, self.seed])
            sixth = np.array([1.0, -6.0, 15.0, -20.0, 15.0, -6.0, 1.0])
            squares = []
            for _ in range(8):
                v = rng.standard_normal(self.x.size)
                v /= np.linalg.norm(v)
                f = np.array([self.value(self.x + j * self.h * v) for j in range(-3, 4)])
                squares.append(float(sixth @ f) ** 2 / 924.0)
            self.sigma = max(float(np.sqrt(np.mean(squares))), self._quantum(v, f) / 2)
        return self.sigma

    def _quantum(self, v: np.ndarray, f: np.ndarray) -> float:
        """Where f takes one value at all seven points, its resolution: the first change
        seen as the spacing grows tenfold (up to 1e6 h); 0 where f already varies."""
        spacing = self.h
        while np.all(f == f[0]) and spacing < 1e6 * self.h:
            spacing *= 10
            f = np.array([self.value(self.x + j * spacing * v) for j in range(-3, 4)])
        changes = np.abs(np.diff(f))
        return float(np.min(changes[changes > 0])) if spacing > self.h and changes.any() else 0.0


def _check_arguments(
    fun: Any, x: Any, mode: Any, blocks: Any, n_directions: Any, eps: Any, rtol: Any,
    atol: Any,
) -> tuple[np.ndarray, float, float]:
    """gradcheck's whole signature, checked; returns x as a float64 vector and the floors."""
    if not callable(fun):
        raise TypeError(f"fun: expected a callable fun(x) -> (value, gradient); got {brief(fun)}")
    try:
        x = np.array(x, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise TypeError(f"x: expected a vector of real numbers; got {type(x).__name__}") from err
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"x: expected a non-empty 1-d vector; got shape {x.shape}")
    if mode not in ("full", "directions"):
        raise ValueError(f"mode: expected 'full' or 'directions'; got {brief(mode)}")
    if not eps > 0:
        raise ValueError(f"eps: expected a step > 0; got {eps}")
    if mode == "directions":
        _checks.integer(n_directions, "n_directions", minimum=1, what="an int >= 1",
                        wrong_type=ValueError)
    for name, sl in (blocks or {}).items():
        if not isinstance(sl, slice) or len(range(x.size)[sl]) == 0:
            raise ValueError(
                f"blocks: expected slices that select coordinates of x (size {x.size}); "
                f"got {brief(name)}: {brief(sl)}"
            )
    return (x, _checks.scalar(rtol, "rtol", nonnegative=True),
            _checks.scalar(atol, "atol", nonnegative=True))


def _value_and_gradient(fun: Callable, x: np.ndarray) -> tuple[float, np.ndarray]:
    """``fun(x)`` as a float and a float64 gradient of x's shape, or an error naming fun."""
    out = fun(x)
    try:
        value, grad = out
    except (TypeError, ValueError):
        raise TypeError(
            f"fun: expected fun(x) to return a pair (value, gradient); got {type(out).__name__}"
        ) from None
    grad = np.asarray(grad, dtype=np.float64)
    if grad.shape != x.shape:
        raise ValueError(f"fun: expected a gradient of shape {x.shape}; got {grad.shape}")
    return float(value), grad


class _Counted:
    """``fun``'s value at a point (its ``value`` method when it has one), counting calls."""

    def __init__(self, fun: Callable) -> None:
        self.fun, self.calls = fun, 0
        self.value_of = getattr(fun, "value", None)  # a value-only evaluation, if offered

    def __call__(self, point: np.ndarray) -> float:
        self.calls += 1
        return float(self.value_of(point) if callable(self.value_of) else self.fun(point)[0])


def _compare(name: str, numeric: np.ndarray, analytic: np.ndarray, bound: np.ndarray,
             rtol: float, atol: float) -> BlockReport:
    diff = np.abs(numeric - analytic)
    scale = float(np.max(np.maximum(np.abs(numeric), np.abs(analytic))))  # NaN propagates
    allowed = np.maximum(bound, max(atol, rtol * scale))
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(diff == 0, 0.0, diff / allowed)
    max_abs = float(np.max(diff))
    return BlockReport(
        name=name,
        size=int(numeric.size),
        max_abs_error=max_abs,
        max_rel_error=max_abs / scale if scale != 0 else 0.0,
        worst_index=int(np.argmax(diff)),
        passed=bool(np.all(diff <= allowed)),  # a NaN anywhere fails
        error_to_bound=float(np.max(ratio)),
    )


# ------------------------------------------------------------------------------------------
# The self-check: every z0 mode x feature map x response length against finite differences
# (``python -m minikto gradcheck``).
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


def run_selfcheck(backend: str = "numpy", *, rtol: float = 0.0) -> list[SelfcheckCase]:
    """Check every z0 mode x {onehot, d=4} x {T=1, T=3}; return one row per case.

    The other losses minikto trains get their rows from
    :func:`minikto.training.family_objective.family_selfcheck` (``python -m minikto gradcheck``
    prints both)."""
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
        f"{'z0 / loss':<18} {'features':<8} {'T':>2} {'params':>6} {'max abs err':>12} "
        f"{'max rel err':>12} {'err/bound':>10} {'worst block':<11}  ok"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        rep: Any = r.report
        n = sum(b.size for b in rep.blocks)
        lines.append(
            f"{str(r.z0):<18} {str(r.features):<8} {r.length:>2} {n:>6} "
            f"{rep.max_abs_error:>12.2e} {rep.max_rel_error:>12.2e} "
            f"{max(b.error_to_bound for b in rep.blocks):>10.2e} {rep.worst.name:<11}  "
            f"{'yes' if rep.passed else 'NO'}"
        )
    return "\n".join(lines)
