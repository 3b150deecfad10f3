r"""How far a correct float64 KTO loss may be from minikto's: bounds from the values at hand.

This is the tolerance rule of docs/CHECK.md for :func:`minikto.check_kto`, written once. Two
correct implementations differ only by rounding, and rounding is bounded by the size of the
numbers each result is computed from. With :math:`u = C \epsilon` (:math:`\epsilon = 2^{-52}`,
:math:`C` = :data:`minikto.gradcheck.ROUNDING` roundings), :math:`\lambda` the larger of the
two weights (so that a mistake in the weights is measured on the same scale) and

.. math:: Z_i = \beta\,(|\pi_i| + |\pi^{ref}_i| + |z_0| + K),

the size of the numbers that enter :math:`z_i = \pm\beta(\pi_i - \pi^{ref}_i - z_0)`
in any order of operations (:math:`K` = the mean of :math:`|` kl log-probs :math:`|` when
the function estimates :math:`z_0` itself, else 0), an output :math:`y` compared with the
value :math:`w` it should have may differ by ``absolute + relative * |w|``:

- a per-example loss :math:`\lambda_i \sigma(-z_i)`: :math:`u \lambda + u Z_i |w|`. The
  first term is the cancellation in :math:`1 - \sigma(z)` (:math:`\sigma(z)` is rounded to
  :math:`\epsilon` absolute), the second the rounding of :math:`z_i` carried through
  :math:`|d\ell/dz| \le \ell`;
- the batch loss: :math:`u \lambda (B + 1) + u \max_i Z_i |w|` (the mean adds B roundings);
- a reward :math:`\beta(\pi_i - \pi^{ref}_i)`: :math:`u \max(\beta, 1) (|\pi_i| +
  |\pi^{ref}_i|)` (the 1 for a reward logged without beta, compared on this scale);
- a gradient by autograd, :math:`-s_i \frac{\lambda_i \beta}{B} \sigma(z_i)\sigma(-z_i)`:
  :math:`u \frac{\lambda \beta}{B} + u Z_i |w|`. Autodiff of ``sigmoid(-z)`` or
  ``1 - sigmoid(z)`` computes :math:`s (1 - s)`, and with :math:`s` near 1 the factor
  :math:`1 - s` is off by :math:`\epsilon` absolute: the first term; the rounding of
  :math:`z_i` moves the gradient by at most :math:`|g_i| \Delta z`: the second.

A gradient taken by central differences of the user's function is compared under the
finite-difference rule of :func:`minikto.gradcheck.difference_quotient` instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..gradcheck import EPSILON, ROUNDING
from .check_cases import Case

__all__ = ["UNIT", "Bounds", "bounds"]

#: ``u``: the roundings one result may carry, times epsilon.
UNIT = ROUNDING * EPSILON


@dataclass(frozen=True)
class Bounds:
    """The difference a correct float64 implementation may show on one case, per output:
    ``absolute[key] + relative[key] * |value it is compared with|``."""

    absolute: dict
    relative: dict

    def allowed(self, key: str, want: np.ndarray | float) -> np.ndarray:
        magnitude = np.nan_to_num(np.abs(np.asarray(want, dtype=float)), posinf=0.0)
        return self.absolute[key] + self.relative[key] * magnitude


def bounds(case: Case, z0: float, estimated: bool) -> Bounds:
    """The bounds of the module docstring at the case's values (``z0``: the one used)."""
    p, r = np.abs(case.policy_logps), np.abs(case.reference_logps)
    kl = float(np.mean(np.abs(case.kl_policy_logps) + np.abs(case.kl_reference_logps)))
    size = case.beta * (p + r + abs(z0) + (kl if estimated else 0.0))  # Z_i
    weight = max(case.desirable_weight, case.undesirable_weight)
    grad = UNIT * weight * case.beta / case.batch
    return Bounds(
        absolute={
            "loss": UNIT * weight * (case.batch + 1),
            "losses": UNIT * weight,
            "rewards": UNIT * max(case.beta, 1.0) * (p + r),
            "grad": grad,
            "grad_kl": grad,
        },
        relative={
            "loss": UNIT * float(np.max(size)),
            "losses": UNIT * size,
            "rewards": 0.0,
            "grad": UNIT * size,
            "grad_kl": 0.0,
        },
    )
