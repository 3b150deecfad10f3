"""The parameter dict of a policy: trainable (each entry keeps its shape and dtype) or frozen.

A trainable policy's ``params`` refuses an entry of another shape or dtype, which NumPy would
otherwise broadcast silently into every later step; a frozen copy (a reference policy) refuses
every change. Both survive pickle and deepcopy whole.
"""

from __future__ import annotations

from typing import Any

__all__ = ["FrozenParams", "TrainableParams"]


class TrainableParams(dict):
    """The parameters of a trainable policy: a dict whose entries keep their shape and dtype.

    Assigning an array of another shape (``params["bias"] = np.zeros(1)``, which would be
    broadcast silently) or dtype, or a new key, is a ``ValueError`` naming the entry.
    """

    def __setitem__(self, key: str, value: Any) -> None:
        if key not in self:
            raise ValueError(
                f"params[{key!r}]: expected one of the policy's parameters {sorted(self)}"
            )
        old = dict.__getitem__(self, key)
        shape, dtype = tuple(getattr(value, "shape", ())), getattr(value, "dtype", None)
        if shape != tuple(old.shape) or dtype != old.dtype:
            raise ValueError(
                f"params[{key!r}]: expected an array of shape {tuple(old.shape)} and dtype "
                f"{old.dtype}; got shape {shape} and dtype {dtype or type(value).__name__}"
            )
        dict.__setitem__(self, key, value)

    def update(self, *args: Any, **kwargs: Any) -> None:
        for key, value in dict(*args, **kwargs).items():
            self[key] = value

    def setdefault(self, key: str, default: Any = None) -> Any:
        if key not in self:
            self[key] = default  # refused: a new key
        return self[key]

    def __reduce__(self) -> tuple:  # pickle and deepcopy rebuild it whole, not item by item
        return (TrainableParams, (dict(self),))


class FrozenParams(dict):
    """The parameters of a frozen policy: a dict that refuses new entries."""

    def _refuse(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError(
            "params: expected a trainable policy; got a frozen copy (a reference policy), "
            "whose parameters are not updated: use policy.copy(frozen=False) to train a copy"
        )

    __setitem__ = __delitem__ = update = pop = popitem = clear = setdefault = _refuse

    def __reduce__(self) -> tuple:  # pickle and deepcopy rebuild it whole, not item by item
        return (FrozenParams, (dict(self),))
