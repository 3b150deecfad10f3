r"""Two hand-written optimizers over a dict of parameter arrays: SGD and Adam.

Both update ``params`` (a dict name -> ``xp`` array, e.g. ``policy.params``) from ``grads``
(same keys) and keep their state as plain arrays so a checkpoint can save and restore it.

SGD:  :math:`\theta \leftarrow \theta - \eta g`.

Adam (Kingma & Ba 2015, Algorithm 1), with step count t starting at 1:

.. math::
    m_t = \beta_1 m_{t-1} + (1 - \beta_1) g, \quad
    v_t = \beta_2 v_{t-1} + (1 - \beta_2) g^2, \quad
    \theta \leftarrow \theta
        - \eta \frac{m_t / (1 - \beta_1^t)}{\sqrt{v_t / (1 - \beta_2^t)} + \epsilon}
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import _checks
from ..backend import to_numpy

__all__ = ["SGD", "Adam", "make_optimizer"]


class SGD:
    """Plain gradient descent with a fixed learning rate."""

    name = "sgd"

    def __init__(self, learning_rate: float) -> None:
        self.learning_rate = _checks.scalar(learning_rate, "learning_rate", positive=True)
        self.t = 0

    def step(self, params: dict[str, Any], grads: dict[str, Any]) -> None:
        """Update ``params`` in place of its entries: ``p <- p - lr * g``."""
        _same_keys(params, grads)
        for k in params:
            params[k] = params[k] - self.learning_rate * grads[k]
        self.t += 1

    def state_dict(self) -> dict[str, np.ndarray]:
        """The optimizer state as NumPy arrays (for a checkpoint)."""
        return {"t": np.asarray(self.t)}

    def load_state_dict(self, state: dict[str, np.ndarray], xp: Any, dtype: Any) -> None:
        """Restore the state saved by :meth:`state_dict`."""
        self.t = int(state["t"])


class Adam:
    """Adam with bias correction (no weight decay)."""

    name = "adam"

    def __init__(
        self,
        learning_rate: float,
        beta1: float = 0.9,
        beta2: float = 0.999,
        eps: float = 1e-8,
    ) -> None:
        self.learning_rate = _checks.scalar(learning_rate, "learning_rate", positive=True)
        self.beta1 = _checks.scalar(beta1, "beta1", nonnegative=True)
        self.beta2 = _checks.scalar(beta2, "beta2", nonnegative=True)
        self.eps = _checks.scalar(eps, "eps", positive=True)
        if not (self.beta1 < 1 and self.beta2 < 1):
            raise ValueError(f"beta1, beta2: expected numbers in [0, 1); got {beta1}, {beta2}")
        self.t = 0
        self.m: dict[str, Any] = {}
        self.v: dict[str, Any] = {}

    def step(self, params: dict[str, Any], grads: dict[str, Any]) -> None:
        """One Adam update of every entry of ``params``."""
        _same_keys(params, grads)
        self.t += 1
        c1 = 1.0 - self.beta1**self.t
        c2 = 1.0 - self.beta2**self.t
        for k in params:
            g = grads[k]
            m = self.m.get(k)
            v = self.v.get(k)
            m = (1 - self.beta1) * g if m is None else self.beta1 * m + (1 - self.beta1) * g
            v = (1 - self.beta2) * g * g if v is None else self.beta2 * v + (1 - self.beta2) * g * g
            self.m[k], self.v[k] = m, v
            params[k] = params[k] - self.learning_rate * (m / c1) / ((v / c2) ** 0.5 + self.eps)

    def state_dict(self) -> dict[str, np.ndarray]:
        """The optimizer state as NumPy arrays (for a checkpoint)."""
        out = {"t": np.asarray(self.t)}
        out.update({f"m.{k}": to_numpy(a) for k, a in self.m.items()})
        out.update({f"v.{k}": to_numpy(a) for k, a in self.v.items()})
        return out

    def load_state_dict(self, state: dict[str, np.ndarray], xp: Any, dtype: Any) -> None:
        """Restore the state saved by :meth:`state_dict` onto namespace ``xp``."""
        self.t = int(state["t"])
        self.m = {k[2:]: xp.asarray(a, dtype=dtype) for k, a in state.items() if k[:2] == "m."}
        self.v = {k[2:]: xp.asarray(a, dtype=dtype) for k, a in state.items() if k[:2] == "v."}


def make_optimizer(name: str, learning_rate: float) -> SGD | Adam:
    """``"adam"`` or ``"sgd"`` with the given learning rate."""
    if name == "adam":
        return Adam(learning_rate)
    if name == "sgd":
        return SGD(learning_rate)
    raise ValueError(f"optimizer: expected 'adam' or 'sgd'; got {name!r}")


def _same_keys(params: dict, grads: dict) -> None:
    if set(params) != set(grads):
        raise ValueError(f"grads: expected the keys {sorted(params)}; got {sorted(grads)}")
