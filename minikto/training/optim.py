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

Both check everything before they change anything: the gradients must have the keys,
shapes and dtypes of the parameters (a ``(1,)`` gradient is never broadcast onto a matrix)
and be finite, and ``params`` must be a mutable dict (a frozen policy's read-only
parameters are refused). An update whose result would not be finite (a gradient so large
that its square overflows, say) raises :class:`NonFiniteError` and leaves the parameters
and the optimizer state as they were. The optimizers replace the entries of the ``params``
dict they are given and never write into any array in place.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from typing import Any

import numpy as np

from .. import _checks
from .._brief import brief
from ..backend import array_namespace, to_numpy

__all__ = ["SGD", "Adam", "NonFiniteError", "make_optimizer", "state_on"]


class NonFiniteError(FloatingPointError, ValueError):
    """A loss, gradient or optimizer state that is not finite: the run cannot go on."""


class SGD:
    """Plain gradient descent with a fixed learning rate."""

    name = "sgd"

    def __init__(self, learning_rate: float) -> None:
        self.learning_rate = _checks.scalar(learning_rate, "learning_rate", positive=True)
        self.t = 0

    def step(self, params: dict[str, Any], grads: dict[str, Any]) -> None:
        """Update ``params`` in place of its entries: ``p <- p - lr * g``."""
        _check_update(params, grads)
        new = {k: params[k] - self.learning_rate * grads[k] for k in params}
        _all_finite(new, "the updated parameters[{k!r}]")
        params.update(new)
        self.t += 1

    def state_dict(self) -> dict[str, np.ndarray]:
        """The optimizer state as NumPy arrays (for a checkpoint)."""
        return {"t": np.asarray(self.t)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
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
        """One Adam update of every entry of ``params`` (all or nothing)."""
        _check_update(params, grads)
        t = self.t + 1
        c1 = 1.0 - self.beta1**t
        c2 = 1.0 - self.beta2**t
        new_m, new_v, new_p = {}, {}, {}
        with np.errstate(over="ignore", invalid="ignore"):  # checked just below
            for k in params:
                g = grads[k]
                m, v = self.m.get(k), self.v.get(k)
                m = (1 - self.beta1) * g if m is None else self.beta1 * m + (1 - self.beta1) * g
                g2 = (1 - self.beta2) * g * g
                v = g2 if v is None else self.beta2 * v + g2
                new_m[k], new_v[k] = m, v
                new_p[k] = params[k] - self.learning_rate * (m / c1) / ((v / c2) ** 0.5 + self.eps)
        _all_finite(new_v, "Adam's second moment v[{k!r}] (the squared gradient overflows)")
        _all_finite(new_p, "the updated parameters[{k!r}]")
        self.m.update(new_m)
        self.v.update(new_v)
        params.update(new_p)
        self.t = t

    def state_dict(self) -> dict[str, np.ndarray]:
        """The optimizer state as NumPy arrays (for a checkpoint)."""
        out = {"t": np.asarray(self.t)}
        out.update({f"m.{k}": to_numpy(a) for k, a in self.m.items()})
        out.update({f"v.{k}": to_numpy(a) for k, a in self.v.items()})
        return out

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the state saved by :meth:`state_dict`, its moments already on the
        parameters' backend and dtype (see :func:`state_on`)."""
        self.t = int(state["t"])
        self.m = {k[2:]: a for k, a in state.items() if k[:2] == "m."}
        self.v = {k[2:]: a for k, a in state.items() if k[:2] == "v."}


def state_on(state: dict[str, np.ndarray], xp: Any, dtype: Any) -> dict[str, Any]:
    """A saved optimizer state with its arrays moved to namespace ``xp`` and ``dtype`` (the
    step count ``t`` stays as saved)."""
    return {k: a if k == "t" else xp.asarray(a, dtype=dtype) for k, a in state.items()}


def make_optimizer(name: str, learning_rate: float) -> SGD | Adam:
    """``"adam"`` or ``"sgd"`` with the given learning rate."""
    if name == "adam":
        return Adam(learning_rate)
    if name == "sgd":
        return SGD(learning_rate)
    raise ValueError(f"optimizer: expected 'adam' or 'sgd'; got {brief(name)}")


def _check_update(params: Any, grads: Any) -> None:
    """Refuse an update that would broadcast, mix dtypes, spread NaN or touch a frozen dict."""
    if not isinstance(params, MutableMapping):
        kind = "read-only mapping" if isinstance(params, Mapping) else type(params).__name__
        raise TypeError(
            f"params: expected the mutable dict of a trainable policy; got a {kind} (a frozen "
            "policy, such as a reference, is never updated)"
        )
    if not isinstance(grads, Mapping):
        raise TypeError(f"grads: expected a dict like params; got {type(grads).__name__}")
    if set(params) != set(grads):
        raise ValueError(f"grads: expected the keys {sorted(params)}; got {sorted(grads)}")
    for k in params:
        p, g = params[k], grads[k]
        if tuple(getattr(g, "shape", ())) != tuple(p.shape) or getattr(g, "dtype", None) != p.dtype:
            raise ValueError(
                f"grads[{k!r}]: expected shape {tuple(p.shape)} and dtype {p.dtype} like the "
                f"parameter; got shape {tuple(getattr(g, 'shape', ()))} and dtype "
                f"{getattr(g, 'dtype', type(g).__name__)}"
            )
    _all_finite(grads, "grads[{k!r}]", error=ValueError)


def _all_finite(arrays: Mapping[str, Any], what: str, error: type = NonFiniteError) -> None:
    for k, a in arrays.items():
        xp = array_namespace(a)
        if not bool(xp.all(xp.isfinite(a))):
            raise error(f"{what.format(k=k)}: expected finite values; got NaN or inf")
