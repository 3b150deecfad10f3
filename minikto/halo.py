r"""Which preference losses are human-aware (HALOs): each loss's implied value function, measured.

The KTO paper (Ethayarajh et al. 2024, arXiv 2402.01306; Def. 3.4 and Thm. 3.5 as worded in its
final arXiv version, v4) calls a loss human-aware when, up to a data constant :math:`C_D`,

.. math:: f(\pi_\theta, \pi_{ref}) = \mathbb{E}_{x,y\sim D}\bigl[a_{x,y}\,
          v\bigl(r_\theta(x,y) - \mathbb{E}_{Q}[r_\theta(x,y')]\bigr)\bigr] + C_D,
          \qquad a_{x,y}\in\{-1,+1\},

with :math:`r_\theta = l(y)\log(\pi_\theta/\pi_{ref})` (``l`` a normalising factor such as
``1/|y|``), a reference-point distribution ``Q`` and ONE value function ``v`` that is
non-decreasing everywhere and concave on gains :math:`(0, \infty)`. Thm. 3.5: DPO (and PPO-Clip)
are HALOs; the paper argues that CSFT and SLiC are not.

This module reads each loss's value function off the loss itself. A pairwise loss is a sum over
its responses; a response's "gain" is its reward above its reference point: the other response
of its pair for a loss of the margin only (DPO's Q), 0 for a loss of each reward on its own
(APO, NCA, SPPO; a zero reference point needs a Q with :math:`\mathbb{E}_Q[r] = 0`, which exists
at every :math:`\theta`, a mixture of :math:`\pi_\theta` and :math:`\pi_{ref}`, since
:math:`\mathbb{E}_{\pi_{ref}}[r] \le 0 \le \mathbb{E}_{\pi_\theta}[r]`, but depends on
:math:`\theta`), BCO's running mean ``delta``. Then, for a chosen (desirable, ``a = -1``)
response :math:`\ell = -v(z) + c`, and for a rejected (undesirable, ``a = +1``) one
:math:`\ell = v(z) + c`, so

.. math:: v_{chosen}(z) = \ell(0) - \ell(z), \qquad v_{rejected}(z) = \ell(z) - \ell(0),

each measured by calling the loss with that one reward moved to ``z`` and the rest at the
reference point. :func:`implied_values` returns both, :func:`halo_properties` measures on a
grid whether they are non-decreasing, concave on gains and one function, and :data:`VERDICTS`
states, per loss, the verdict and its reason (``tests/test_halo.py`` checks each verdict against
the measurement). The verdicts test this natural decomposition; where the definition's freedom
(another Q, another sign pattern) matters, the reason says so.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from ._brief import brief
from .bco import bco_loss
from .kto import kto_loss
from .losses import sft_loss
from .pairwise import PAIRWISE_LOSS_TYPES, preference_loss
from .reference_free import orpo_loss, simpo_loss

__all__ = [
    "HALO_LOSSES",
    "MARGIN_LOSSES",
    "STRUCTURAL",
    "VERDICTS",
    "HaloProperties",
    "halo_properties",
    "implied_values",
]

#: Every loss of the family this module reads a value function from.
HALO_LOSSES = ("kto", *PAIRWISE_LOSS_TYPES, "simpo", "orpo", "bco", "sft")
#: The losses of a pair's MARGIN (or of the two responses together): one data point per pair,
#: the chosen response (a = -1), whose reference point is the rejected response (DPO's Q).
MARGIN_LOSSES = (
    "sigmoid",
    "hinge",
    "ipo",
    "exo_pair",
    "robust",
    "aot",
    "aot_pair",
    "discopop",
    "simpo",
    "orpo",
)


class HaloProperties(NamedTuple):
    """What :func:`halo_properties` measures on a grid of z."""

    nondecreasing: bool  #: both sides' v never decrease (up to rounding)
    concave_on_gains: bool  #: both sides' v have second differences <= 0 for z > 0
    one_function: bool  #: the chosen and the rejected side give the same v (margin: True)

    @property
    def halo(self) -> bool:
        return self.nondecreasing and self.concave_on_gains and self.one_function


def implied_values(loss: str, z: Any, *, beta: float = 1.0) -> dict[str, np.ndarray]:
    """The value of a response whose reward sits ``z`` above its reference point, read off
    ``loss`` (see the module docstring): ``{"chosen": v(z)}`` for a loss of the margin
    (:data:`MARGIN_LOSSES`), ``{"chosen": ..., "rejected": ...}`` for a loss of each response's
    reward against 0 (or BCO's delta); float64 arrays (len(z),).

    For ``"aot"``/``"aot_pair"`` a batch of one pair (the sort is then the identity); for
    ``"simpo"`` and ``"orpo"`` ``z`` is the mean token log-prob's offset from
    ``-(max|z| + 1)`` (they are reference-free; ORPO's NLL counts one token per response);
    for ``"kto"``, ``"bco"`` and ``"sft"`` a desirable and an undesirable example.
    """
    z = np.asarray(z, dtype=np.float64)
    base = -float(np.max(np.abs(z))) - 1.0  # where a reference-free pair sits: mean log-probs < 0
    at_zero = _loss_at(loss, 0.0, 0.0, beta, base)
    out = {"chosen": at_zero - np.array([_loss_at(loss, float(u), 0.0, beta, base) for u in z])}
    if loss not in MARGIN_LOSSES:
        out["rejected"] = np.array([_loss_at(loss, 0.0, float(u), beta, base) for u in z]) - at_zero
    return out


def _loss_at(loss: str, c: float, r: float, beta: float, base: float) -> float:
    """The loss of one pair whose chosen reward is ``c`` and rejected reward ``r`` (or, for an
    unpaired loss, the sum of a desirable example at ``c`` and an undesirable one at ``r``)."""
    zero, one = np.zeros(1), np.ones(1)
    if loss in PAIRWISE_LOSS_TYPES:
        kw = {"delta": 0.0} if loss == "bco_pair" else {}
        return float(preference_loss(loss, c * one, r * one, zero, zero, beta=beta, **kw).loss)
    base = base * one
    if loss == "simpo":
        return float(simpo_loss(base + c, base + r, beta=beta, simpo_gamma=0.0).loss)
    if loss == "orpo":
        return float(orpo_loss(base + c, base + r, one, beta=beta).loss)
    labels = np.array([True, False])
    both = np.array([c, r])
    if loss == "kto":
        return 2 * float(kto_loss(both, np.zeros(2), labels, 0.0, beta=beta).loss)
    if loss == "bco":
        return 2 * float(bco_loss(both, np.zeros(2), labels, beta=beta, delta=0.0).loss)
    if loss == "sft":
        return float(sft_loss(both, labels).loss)
    raise ValueError(f"loss: expected one of {HALO_LOSSES}; got {brief(loss)}")


def halo_properties(loss: str, *, beta: float = 1.0, points: int = 401) -> HaloProperties:
    """Measure, on ``points`` values of z in ``[-span, span]`` with ``span = 12 / beta`` (so
    ``beta z`` covers every turning point of the family: EXO's 6.9, IPO's and SPPO's targets,
    the hinge's kink, NCA's log 2), whether the implied value functions are non-decreasing,
    concave on gains and one function.

    Tolerances: each value is a difference of two float64 losses of size at most ``|v|max``
    (the largest |v| on the grid, at least 1), each rounded to a few ulps, so a value is off by
    at most ``~8 eps |v|max`` and a second difference (four values, weights 1, 2, 1) by
    ``~32 eps |v|max``. A difference or second difference counts as negative/positive only
    beyond ``64 eps |v|max`` (twice that), and the two sides are one function when they differ
    by less than that anywhere.
    """
    span = 12.0 / beta
    z = np.linspace(-span, span, points)
    sides = list(implied_values(loss, z, beta=beta).values())
    scale = max(1.0, max(float(np.max(np.abs(v))) for v in sides))
    tol = 64 * float(np.finfo(np.float64).eps) * scale
    gains = z > 0
    return HaloProperties(
        nondecreasing=all(bool(np.all(np.diff(v) >= -tol)) for v in sides),
        concave_on_gains=all(bool(np.all(np.diff(v[gains], 2) <= tol)) for v in sides),
        one_function=bool(np.max(np.abs(sides[0] - sides[-1])) <= tol),
    )


#: The losses whose verdict one pair measured alone cannot show: ``aot`` (its sort pairs one
#: pair's policy margin with another pair's reference margin) and ``orpo`` (its value moves with
#: the pair's position); tests/test_halo.py measures each of those two reasons.
STRUCTURAL = ("aot", "orpo")

#: Per loss: (is it a HALO?, the reason), for the decomposition of the module docstring.
VERDICTS: dict[str, tuple[bool, str]] = {
    "kto": (
        True,
        "the paper's own HALO: v = sigmoid(beta z) on both sides, reference point z0 "
        "(equal weights lambda_D = lambda_U here)",
    ),
    "sigmoid": (
        True,
        "DPO, Thm. 3.5: v = log sigmoid(beta z), increasing and concave, the "
        "reference point the pair's other response (with label_smoothing > 0, "
        "cDPO, v turns DOWN past log((1 - eps)/eps): not a HALO)",
    ),
    "hinge": (
        True,
        "v = min(0, beta z - 1): non-decreasing and concave. TRL's hinge is a hinge "
        "on log-RATIOS with no cross-entropy term; the SLiC the paper rules out "
        "calibrates raw log-probs and adds a cross-entropy regulariser",
    ),
    "ipo": (
        False,
        "v = -(z - 1/(2 beta))^2 decreases past the target margin 1/(2 beta): IPO "
        "penalises a margin that is too large",
    ),
    "exo_pair": (
        False,
        "v = -KL((sigma(h), sigma(-h)) || (1 - eps, eps)) is largest at "
        "h = log((1 - eps)/eps) and decreases past it",
    ),
    "nca_pair": (
        False,
        "the chosen response's v = log sigmoid(u) + log sigmoid(-u) / 2 peaks at "
        "u = log 2 and then decreases; the rejected side's v = softplus(u) / 2 is "
        "convex, another function",
    ),
    "robust": (
        True,
        "v = [(1 - eps) log sigmoid(h) - eps log sigmoid(-h)] / (1 - 2 eps): "
        "v' > 0 and v'' = -sigma(h) sigma(-h) < 0, for any eps < 1/2",
    ),
    "bco_pair": (
        False,
        "two value functions: log sigmoid(beta z) for the chosen response, "
        "softplus(beta z) (convex on gains) for the rejected one",
    ),
    "sppo_hard": (
        False,
        "squares: each response is pulled to a target reward +-1/(2 beta) and pushed back past it",
    ),
    "aot": (
        False,
        "the margins are sorted across the batch, so a pair's term mixes the "
        "policy's margin of one pair with the reference's margin of another: not a "
        "function of any response's own reward (for one pair it is DPO)",
    ),
    "aot_pair": (
        True,
        "with the rank-matched rejected reward of the batch as each chosen "
        "response's reference point, DPO's v (a batch-level Q; other prompts' "
        "responses, as KTO's batch estimate of z0 uses)",
    ),
    "discopop": (
        False,
        "v = log sigmoid(h) (1 - s) - e^{-h} s with s = sigma(h / tau) is not "
        "monotone: v'(0) = -0.78 beta < 0 at tau = 0.05, a local minimum of the "
        "loss just below h = 0",
    ),
    "apo_zero": (True, "KTO with z0 = 0: v = sigmoid(beta z) on both sides, reference point 0"),
    "apo_down": (
        False,
        "the chosen response is pushed DOWN against 0 (a = +1) and UP against "
        "the rejected one (a = -1): two signs for one (x, y)",
    ),
    "simpo": (
        True,
        "with l(y) = 1/|y| and a uniform pi_ref (reference-free), "
        "v = log sigmoid(beta z - gamma): increasing and concave",
    ),
    "orpo": (
        False,
        "it compares log-ODDS g(a) = a - log(1 - e^a), a nonlinear function of the "
        "mean log-prob a: its value of a pair depends on where the pair sits, not "
        "only on the reward difference (one pair measured alone looks like a HALO), "
        "and the chosen NLL is added",
    ),
    "bco": (
        False,
        "as bco_pair: log sigmoid for desirable examples, softplus (convex on gains) "
        "for undesirable ones",
    ),
    "sft": (
        False,
        "it learns from desirable examples only (v = z for them, nothing for the "
        "others): no value function covers the undesirable side; the paper's CSFT "
        "verdict",
    ),
}
