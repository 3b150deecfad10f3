r"""How far a correct float64 KTO loss may be from minikto's: bounds from the values at hand.

This is the tolerance rule of docs/CHECK.md for :func:`minikto.check_kto`, written once. Two
correct implementations differ only by rounding, and rounding is bounded by the size of the
numbers each result is computed from. With :math:`\epsilon = 2^{-52}`, :math:`C` =
:data:`minikto.gradcheck.ROUNDING` roundings, :math:`\lambda` the larger of the two weights
(so that a mistake in the weights is measured on the same scale) and

.. math:: Z_i = \beta\,(|\pi_i| + |\pi^{ref}_i| + |z_0| + K),

the size of the numbers that enter :math:`z_i = \pm\beta(\pi_i - \pi^{ref}_i - z_0)`
(:math:`K` = the mean of :math:`|` kl log-probs :math:`|` when the function estimates
:math:`z_0` itself, else 0):

- a per-example loss :math:`\lambda_i \sigma(-z_i)` is off by at most
  :math:`C \epsilon \lambda (1 + Z_i)`: the sigmoid (or :math:`1 - \sigma`, whose
  cancellation costs :math:`\epsilon` absolute) and the rounding of :math:`z_i` carried
  through a slope :math:`\le 1/4`;
- the batch loss by the mean of those plus :math:`C \epsilon B \lambda` for the sum;
- a reward :math:`\beta(\pi_i - \pi^{ref}_i)` by :math:`C \epsilon \max(\beta, 1) (|\pi_i| +
  |\pi^{ref}_i|)` (the 1 for a reward logged without beta, which is compared on this scale);
- a gradient taken by autograd, :math:`-s_i \frac{\lambda_i \beta}{B} \sigma(z_i)
  \sigma(-z_i)`, by :math:`C \epsilon \frac{\lambda \beta}{B} (1 + Z_i)`: written as
  :math:`s (1 - s)` with :math:`s` near 1 the factor :math:`1 - s` is off by
  :math:`\epsilon` absolute (autodiff of ``sigmoid(-z)`` or ``1 - sigmoid(z)`` computes it
  so), and the rounding of :math:`z_i` moves the gradient by at most :math:`|g_i| \Delta z`.

A gradient taken by central differences of the user's function is compared under the
finite-difference rule of :func:`minikto.gradcheck.difference_quotient` instead.
"""

from __future__ import annotations

import numpy as np

from ..gradcheck import EPSILON, ROUNDING
from .check_cases import Case

__all__ = ["Bounds", "bounds"]

#: The absolute error one rounding of a number of size 1 may carry, times the roundings.
UNIT = ROUNDING * EPSILON


class Bounds:
    """The largest difference a correct float64 implementation may show on one case."""

    def __init__(self, loss: float, losses: np.ndarray, rewards: np.ndarray,
                 grad: np.ndarray) -> None:
        self.loss, self.losses, self.rewards, self.grad = loss, losses, rewards, grad


def bounds(case: Case, z0: float, estimated: bool) -> Bounds:
    """The bounds of the module docstring at the case's values (``z0``: the one used)."""
    p, r = np.abs(case.policy_logps), np.abs(case.reference_logps)
    kl = float(np.mean(np.abs(case.kl_policy_logps) + np.abs(case.kl_reference_logps)))
    size = case.beta * (p + r + abs(z0) + (kl if estimated else 0.0))  # Z_i
    weight = max(case.desirable_weight, case.undesirable_weight)  # whichever a port applies
    losses = UNIT * weight * (1.0 + size)
    return Bounds(
        loss=float(np.mean(losses) + UNIT * case.batch * weight),
        losses=losses,
        rewards=UNIT * max(case.beta, 1.0) * (p + r),
        grad=UNIT * weight * case.beta / case.batch * (1.0 + size),
    )
