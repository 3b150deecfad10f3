"""Training configuration, with TRL's knob names, and the paper's Eq. 8 weight check."""

from __future__ import annotations

import dataclasses
import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import _checks
from ..objective import validate_z0_mode

__all__ = [
    "LOSSES",
    "KTOConfig",
    "WeightBalanceWarning",
    "balanced_desirable_weight",
    "check_weight_balance",
]

#: The training objectives; "dpo" needs paired data, the others unpaired data.
LOSSES = ("kto", "apo_zero_unpaired", "sft", "dpo")


@dataclass
class KTOConfig:
    """Everything a training run needs to know; names follow TRL's ``KTOConfig``.

    The defaults train the default toy to a clearly better policy in a few seconds.
    """

    # the KTO objective (KTO_REFERENCE §1-§2)
    beta: float = 0.1  # sharpness of the value function; TRL's default 0.1
    desirable_weight: float = 1.0  # lambda_D
    undesirable_weight: float = 1.0  # lambda_U
    z0: str | float = "batch"  # "batch", "batch-grad", "exact", "zero", or a fixed number
    loss: str = "kto"  # "kto", "apo_zero_unpaired", "sft" (unpaired data) or "dpo" (paired)
    # optimisation
    learning_rate: float = 0.05  # step size (a toy tolerates far larger steps than an LLM)
    optimizer: str = "adam"  # "adam" or "sgd", both hand-written (minikto.training.optim)
    batch_size: int = 32  # examples per step, >= 2 (the batch estimate needs mismatched pairs)
    max_steps: int = 300  # optimizer steps
    seed: int = 0  # seeds the batch order (and the policy initialisation when sft_steps > 0)
    # the model
    features: str | int = "onehot"  # "onehot" or an embedding width d
    backend: str = "numpy"  # "numpy", "cupy", "array_api_strict", ...
    dtype: str = "float64"  # "float64" or "float32"
    sft_steps: int = 0  # > 0: SFT a fresh policy on the data's responses, then freeze it
    # bookkeeping
    eval_every: int = 25  # exact evaluation every this many steps (0: only at start and end)
    checkpoint_every: int = 0  # also checkpoint every this many steps (0: only at the end)
    progress: bool | None = None  # tqdm bar; None: only for runs of 2000 steps or more

    def __post_init__(self) -> None:
        _checks.scalar(self.beta, "beta", positive=True)
        _checks.scalar(self.desirable_weight, "desirable_weight", nonnegative=True)
        _checks.scalar(self.undesirable_weight, "undesirable_weight", nonnegative=True)
        _checks.scalar(self.learning_rate, "learning_rate", positive=True)
        self.z0 = validate_z0_mode(self.z0)
        if self.loss not in LOSSES:
            raise ValueError(f"loss: expected one of {LOSSES}; got {self.loss!r}")
        if self.optimizer not in ("adam", "sgd"):
            raise ValueError(f"optimizer: expected 'adam' or 'sgd'; got {self.optimizer!r}")
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"dtype: expected 'float32' or 'float64'; got {self.dtype!r}")
        for name, low in (
            ("batch_size", 2),
            ("max_steps", 0),
            ("seed", 0),
            ("sft_steps", 0),
            ("eval_every", 0),
            ("checkpoint_every", 0),
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name}: expected an int >= {low}; got {value!r}")
        if not isinstance(self.backend, str) or not self.backend:
            raise ValueError(f"backend: expected a name such as 'numpy'; got {self.backend!r}")
        if self.progress is not None and not isinstance(self.progress, bool):
            raise ValueError(f"progress: expected True, False or None; got {self.progress!r}")
        if not (
            self.features == "onehot"
            or (
                isinstance(self.features, int)
                and not isinstance(self.features, bool)
                and self.features > 0
            )
        ):
            raise ValueError(
                f"features: expected 'onehot' or a positive int; got {self.features!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict of every field."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> KTOConfig:
        """Build a config from a dict; an unknown key is an error naming it."""
        if not isinstance(data, dict):
            raise TypeError(
                f"config: expected a dict of KTOConfig fields; got {type(data).__name__}"
            )
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"config: unknown keys {unknown}; expected some of {sorted(known)}")
        return cls(**data)

    @classmethod
    def from_json(cls, path: str | Path) -> KTOConfig:
        """Read a config file (a JSON object of fields, UTF-8, a byte-order mark allowed).

        Invalid UTF-8 or JSON, a duplicate key, or anything but an object is a ValueError
        naming the file; a file that cannot be opened raises the usual ``OSError``.
        """
        raw = Path(path).read_bytes()
        body = raw.removeprefix(b"\xef\xbb\xbf")  # a UTF-8 byte-order mark, as editors write
        try:
            data = json.loads(body.decode("utf-8"), object_pairs_hook=_no_duplicate_keys)
        except UnicodeDecodeError as err:
            offset = len(raw) - len(body) + err.start + 1
            raise ValueError(
                f"config file {path}: invalid UTF-8 at byte {offset}; save it as UTF-8"
            ) from None
        except json.JSONDecodeError as err:
            raise ValueError(
                f"config file {path}: invalid JSON at line {err.lineno}: {err.msg}"
            ) from err
        except (ValueError, RecursionError) as err:  # a duplicate key, nesting, a huge integer
            raise ValueError(f"config file {path}: invalid JSON: {err}") from None
        if not isinstance(data, dict):
            raise ValueError(
                f"config file {path}: expected a JSON object; got {type(data).__name__}"
            )
        return cls.from_dict(data)


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


class WeightBalanceWarning(UserWarning):
    """The desirable/undesirable weights fall outside the paper's Eq. 8 band."""


def check_weight_balance(
    num_desirable: int,
    num_undesirable: int,
    desirable_weight: float,
    undesirable_weight: float,
    *,
    warn: bool = True,
) -> tuple[float, tuple[float, float]]:
    r"""The paper's Eq. 8 ratio and the band it should lie in.

    The paper advises :math:`\lambda_D n_D / (\lambda_U n_U) \in [1, 4/3]`: desirable
    examples should weigh in at least as much as undesirable ones, and at most a third more.

    Returns
    -------
    ratio : float
        ``desirable_weight * n_D / (undesirable_weight * n_U)`` (inf when n_U or lambda_U is 0).
    band : (float, float)
        The ``desirable_weight`` values that would put the ratio in [1, 4/3] with
        ``undesirable_weight`` fixed.

    Warns
    -----
    WeightBalanceWarning
        When ``warn`` and the ratio lies outside [1, 4/3], with the ratio and the band.
    """
    denominator = undesirable_weight * num_undesirable
    ratio = float("inf") if denominator == 0 else desirable_weight * num_desirable / denominator
    if num_desirable == 0:
        band = (float("nan"), float("nan"))
    else:
        band = (denominator / num_desirable, 4.0 / 3.0 * denominator / num_desirable)
    if warn and (num_desirable == 0 or num_undesirable == 0):
        kind = "desirable" if num_desirable == 0 else "undesirable"
        warnings.warn(
            f"the data hold no {kind} examples, so the paper's Eq. 8 ratio "
            f"desirable_weight * n_D / (undesirable_weight * n_U) = {ratio:g} cannot lie in "
            f"[1, 4/3]; the {kind} side of the KTO loss never acts",
            WeightBalanceWarning,
            stacklevel=2,
        )
    elif warn and not (1.0 <= ratio <= 4.0 / 3.0):
        warnings.warn(
            f"desirable_weight * n_D / (undesirable_weight * n_U) = {desirable_weight:g} * "
            f"{num_desirable} / ({undesirable_weight:g} * {num_undesirable}) = {ratio:.3f} lies "
            f"outside the paper's Eq. 8 band [1, 4/3]; with undesirable_weight = "
            f"{undesirable_weight:g}, a desirable_weight in [{band[0]:.3f}, {band[1]:.3f}] "
            "would put it inside",
            WeightBalanceWarning,
            stacklevel=2,
        )
    return ratio, band


def balanced_desirable_weight(
    num_desirable: int, num_undesirable: int, undesirable_weight: float = 1.0
) -> float:
    """The smallest desirable weight (rounded up to 2 decimals, at least 1) that puts the
    paper's Eq. 8 ratio ``desirable_weight * n_D / (undesirable_weight * n_U)`` in [1, 4/3].

    Example: 1:1 data gives 1.0; keeping 10% of 1:1 desirable data gives 10.0.
    """
    _, (low, _) = check_weight_balance(
        num_desirable, num_undesirable, 1.0, undesirable_weight, warn=False
    )
    if not math.isfinite(low):
        raise ValueError(
            f"num_desirable: expected at least one desirable example; got {num_desirable}"
        )
    return max(1.0, math.ceil(low * 100 - 1e-9) / 100)
