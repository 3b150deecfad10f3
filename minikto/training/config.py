"""Training configuration, with TRL's knob names, and the paper's Eq. 8 weight check.

Each field of :class:`KTOConfig` carries its default and one line of help; the ``minikto train``
flags are generated from them (:mod:`minikto.tools.cli`), so the two cannot drift apart.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._brief import brief
from ..objective import Z0_MODES, validate_z0_mode
from ..pairwise import PAIRWISE_LOSS_TYPES

__all__ = [
    "BACKENDS",
    "LOSSES",
    "MAX_INT",
    "MAX_SCALE",
    "PAIRED_LOSSES",
    "TRL_ALIASES",
    "TRL_WITHOUT_MEANING",
    "KTOConfig",
    "WeightBalanceWarning",
    "balanced_desirable_weight",
    "check_weight_balance",
]

#: The objectives that read paired data: DPO, TRL's DPOConfig.loss_type values, SimPO, ORPO.
PAIRED_LOSSES = ("dpo", *PAIRWISE_LOSS_TYPES, "simpo", "orpo")
#: The training objectives; those of PAIRED_LOSSES need paired data, the others unpaired data.
LOSSES = ("kto", "apo_zero_unpaired", "sft", "bco", *PAIRED_LOSSES)
#: The array libraries a run may use (a name, never an arbitrary module to import).
BACKENDS = ("numpy", "array_api_strict", "cupy")
#: Largest beta, weight, learning rate or fixed z0. One example's gradient is at most
#: weight * beta / 4 times the gradient of its log-ratio, and Adam squares gradients: with beta
#: and the weight both <= 1e6, that square stays below float32's largest value (3.4e38) for any
#: log-ratio gradient up to 1e7, far beyond a toy. The paper's beta lies in [0.01, 10] and its
#: Eq. 8 weights are of order 1 to 10.
MAX_SCALE = 1e6
#: Largest integer knob: steps, seeds and sizes are stored as int64 in checkpoints.
MAX_INT = 2**63 - 1


def option(default: Any, help: str, choices: tuple[Any, ...] = ()) -> Any:
    """A dataclass field with its help text (and the values it takes) as metadata."""
    return dataclasses.field(default=default, metadata={"help": help, "choices": choices})


@dataclass
class KTOConfig:
    """Everything a training run needs to know; names follow TRL's ``KTOConfig``.

    The defaults train the default toy to a clearly better policy in a few seconds. Every field
    is a plain Python value (what JSON holds), checked when the config is built, so a config
    that cannot be saved with a run is refused before any folder is made.
    """

    # the KTO objective (the paper's §4.1, Eq. 7; the weights of Eq. 8)
    beta: float = option(0.1, "sharpness of the value function sigmoid(beta * (r - z0)), as "
                            "in TRL; at most 1e6")
    desirable_weight: float = option(1.0, "lambda_D, weight of a desirable example's loss; Eq. 8 "
                                        "wants lambda_D n_D / (lambda_U n_U) in [1, 4/3]; <= 1e6")
    undesirable_weight: float = option(1.0, "lambda_U, weight of an undesirable example's loss; "
                                          "<= 1e6")
    z0: str | float = option("batch", "reference point: TRL's detached batch estimate, the same "
                                    "with its gradient, the exact KL, 0, or a fixed number of "
                                    "nats (|z0| <= 1e6)", Z0_MODES + ("NUMBER",))
    loss: str = option("kto", "objective; 'dpo', TRL's DPO loss types, 'simpo' and 'orpo' read "
                            "paired data, the others unpaired data (TRL: loss_type)", LOSSES)
    # optimisation
    learning_rate: float = option(0.05, "step size; a toy tolerates far larger steps than an LLM; "
                                      "at most 1e6")
    optimizer: str = option("adam", "hand-written optimizer (minikto.training.optim)",
                          ("adam", "sgd"))
    batch_size: int = option(32, "examples per step, >= 2: the batch estimate of z0 needs "
                               "mismatched pairs (TRL: per_device_train_batch_size)")
    max_steps: int = option(300, "optimizer steps")
    seed: int = option(0, "seeds the batch order (and the policy's initialisation when "
                        "sft_steps > 0)")
    # the model
    features: str | int = option("onehot", "one-hot features, or embeddings of this width",
                               ("onehot", "WIDTH"))
    backend: str = option("numpy", "array library the run computes with", BACKENDS)
    dtype: str = option("float64", "floating dtype of the policy and the loss",
                      ("float32", "float64"))
    sft_steps: int = option(0, "> 0: first SFT a fresh policy on the data's responses for this "
                             "many steps, then freeze it as the reference")
    # bookkeeping
    eval_every: int = option(25, "exact evaluation every this many steps (0: only at the start "
                               "and the end; TRL: eval_steps)")
    checkpoint_every: int = option(0, "also checkpoint every this many steps (0: only at the end; "
                                    "TRL: save_steps)")
    progress: bool | None = option(None, "progress bar; unset: only for runs of 2000 steps or more")

    def __post_init__(self) -> None:
        for name in ("beta", "learning_rate"):
            _check_real(getattr(self, name), name, low=0.0, strict=True)
        for name in ("desirable_weight", "undesirable_weight"):
            _check_real(getattr(self, name), name, low=0.0, strict=False)
        if self.desirable_weight == 0 and self.undesirable_weight == 0:
            raise ValueError(
                "desirable_weight, undesirable_weight: expected at least one > 0; got both 0, "
                "which weighs every example's loss by 0 and trains nothing"
            )
        if not isinstance(self.z0, str):
            _check_real(self.z0, "z0", low=-MAX_SCALE, strict=False)
        elif self.z0 not in Z0_MODES:
            raise ValueError(f"z0: expected one of {Z0_MODES} or a number; got {_show(self.z0)}")
        self.z0 = validate_z0_mode(self.z0)
        for name in ("loss", "optimizer", "dtype"):
            choices = _choices(name)
            if getattr(self, name) not in choices:
                expected = (f"one of {choices}" if len(choices) > 2
                            else f"{choices[0]!r} or {choices[1]!r}")
                raise ValueError(f"{name}: expected {expected}; got {_show(getattr(self, name))}")
        for name, low in (("batch_size", 2), ("max_steps", 0), ("seed", 0), ("sft_steps", 0),
                          ("eval_every", 0), ("checkpoint_every", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name}: expected an int >= {low}; got {_show(value)}")
            if value > MAX_INT:
                raise ValueError(f"{name}: expected an int below 2**63 (checkpoints store it "
                                 f"as int64); got {_show(value)}")
        if self.backend not in BACKENDS:
            raise ValueError(f"backend: expected a name: 'numpy', 'array_api_strict' or 'cupy'; "
                             f"got {_show(self.backend)}")
        if self.progress is not None and not isinstance(self.progress, bool):
            raise ValueError(
                f"progress: expected True, False or None; got {_show(self.progress)}"
            )
        features = self.features
        if not (features == "onehot" or (isinstance(features, int) and not isinstance(
                features, bool) and 0 < features <= MAX_INT)):
            raise ValueError(f"features: expected 'onehot' or a positive int; got "
                             f"{_show(features)}")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict of every field."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> KTOConfig:
        """Build a config from a dict of fields; TRL's names for a field are accepted too.

        A key minikto does not know is an error naming it (with the closest known name), and so
        is a TRL setting that has no meaning here (with the reason).
        """
        if not isinstance(data, dict):
            raise TypeError(
                f"config: expected a dict of KTOConfig fields; got {type(data).__name__}"
            )
        fields: dict[str, Any] = {}
        spelled: dict[str, str] = {}
        for key, value in data.items():
            if not isinstance(key, str):
                raise ValueError(f"config: expected text keys; got {_show(key)}")
            name = TRL_ALIASES.get(key, key)
            if name in spelled:
                raise ValueError(
                    f"config: {_show(spelled[name])} and {_show(key)} both set {name}"
                )
            spelled[name] = key
            fields[name] = value
        _refuse_unknown_keys(set(fields) - set(field_names()))
        return cls(**fields)

    @classmethod
    def from_file(cls, path: str | Path) -> KTOConfig:
        """Read a config file: YAML if it ends in ``.yaml`` or ``.yml``, JSON otherwise.

        See :func:`minikto.training.config_file.read_config_file` for what is refused.
        """
        from .config_file import read_config_file

        return cls.from_dict(read_config_file(path))

    @classmethod
    def from_json(cls, path: str | Path) -> KTOConfig:
        """Read a JSON config file (an object of fields, UTF-8, a byte-order mark allowed)."""
        from .config_file import read_config_file

        return cls.from_dict(read_config_file(path, kind="json"))


def field_names() -> tuple[str, ...]:
    """The names of :class:`KTOConfig`'s fields, in order."""
    return tuple(f.name for f in dataclasses.fields(KTOConfig))


def _choices(name: str) -> tuple[Any, ...]:
    return next(f.metadata["choices"] for f in dataclasses.fields(KTOConfig) if f.name == name)


def _show(value: Any) -> str:
    """A value in an error message: ``repr``, bounded (see :func:`minikto._brief.brief`)."""
    return brief(value)


def _check_real(value: Any, name: str, *, low: float, strict: bool) -> None:
    """Refuse what is not a plain real number in ``[low, MAX_SCALE]`` (``> low`` if strict)."""
    if isinstance(value, (bool, str)) or not hasattr(value, "__float__"):
        raise TypeError(
            f"{name}: expected a real number; got {type(value).__name__} {_show(value)}"
        )
    if not isinstance(value, (int, float)):  # numpy, Decimal, Fraction: not what JSON holds
        raise TypeError(
            f"{name}: expected a Python float or int (a config holds plain JSON values); got "
            f"{type(value).__module__}.{type(value).__name__} {_show(value)}; convert it with "
            "float()"
        )
    if isinstance(value, float) and math.isnan(value) or value in (math.inf, -math.inf):
        raise ValueError(f"{name}: expected a finite number; got {float(value)}")
    if value > MAX_SCALE or value < low or (strict and value == low):
        bound = f"> {low:g}" if strict else f">= {low:g}"
        if value > MAX_SCALE or value < -MAX_SCALE:
            raise ValueError(
                f"{name}: expected a number of size at most 1e6 (MAX_SCALE: larger values "
                f"overflow Adam's squared gradients); got {_show(value)}"
            )
        raise ValueError(f"{name}: expected a number {bound}; got {float(value)}")


# ------------------------------------------------------------------------------------------
# TRL's names: the same concept under another name, or a setting minikto does not have

#: TRL / Hugging Face name -> the KTOConfig field with the same meaning.
TRL_ALIASES = {
    "per_device_train_batch_size": "batch_size",
    "loss_type": "loss",
    "eval_steps": "eval_every",
    "save_steps": "checkpoint_every",
}

#: TRL / Hugging Face settings with no meaning in minikto, and why.
TRL_WITHOUT_MEANING = {
    "num_train_epochs": "minikto counts optimizer steps: set max_steps (one epoch is "
                        "len(data) / batch_size steps)",
    "gradient_accumulation_steps": "each step takes one batch; raise batch_size instead",
    "output_dir": "the run folder is given on the command line (--out or --output_dir)",
    "model_name_or_path": "the policy is the toy's softmax policy",
    "model_init_kwargs": "the policy is the toy's softmax policy",
    "ref_model_init_kwargs": "the reference is the toy's base policy (or the SFT policy)",
    "precompute_ref_log_probs": "the reference's log-probs are exact and cheap on the toy",
    "max_length": "a response's length is the toy task's max_length",
    "max_prompt_length": "a prompt is one token of the toy task",
    "max_completion_length": "a response's length is the toy task's max_length",
    "truncation_mode": "nothing is truncated: the toy's sequences are short",
    "padding_value": "responses are padded by the toy task, not a tokenizer",
    "label_pad_token_id": "responses are padded by the toy task, not a tokenizer",
    "warmup_ratio": "the learning rate is constant",
    "warmup_steps": "the learning rate is constant",
    "lr_scheduler_type": "the learning rate is constant",
    "weight_decay": "minikto's Adam has no weight decay",
    "max_grad_norm": "gradients are not clipped (grad_norm is logged instead)",
    "optim": "set optimizer to 'adam' or 'sgd'",
    "adam_beta1": "Adam's betas are fixed at (0.9, 0.999)",
    "adam_beta2": "Adam's betas are fixed at (0.9, 0.999)",
    "adam_epsilon": "Adam's epsilon is fixed at 1e-8",
    "bf16": "set dtype to 'float32' or 'float64'",
    "fp16": "set dtype to 'float32' or 'float64'",
    "gradient_checkpointing": "the toy policy stores no activations worth recomputing",
    "disable_dropout": "the toy policy has no dropout",
    "per_device_eval_batch_size": "evaluation is exact, over every response, not batched",
    "logging_steps": "every step is logged (metrics.jsonl)",
    "report_to": "metrics go to the run folder's metrics.jsonl",
    "dataset_num_proc": "the toy data need no preprocessing workers",
    "generate_during_eval": "evaluation is exact, nothing is sampled",
    "is_encoder_decoder": "the toy policy is a decoder of one layer",
    "push_to_hub": "runs stay in their folder",
}


def _refuse_unknown_keys(unknown: set[str]) -> None:
    """Raise one ValueError naming every key that is not a field, with a hint for each."""
    if not unknown:
        return
    parts = [f"{_show(key)} is a TRL setting with no meaning in minikto: {TRL_WITHOUT_MEANING[key]}"
             for key in sorted(unknown & set(TRL_WITHOUT_MEANING))]
    others = sorted(unknown - set(TRL_WITHOUT_MEANING))
    if others:
        known = field_names() + tuple(TRL_ALIASES)
        hints = [f"did you mean {guess!r} for {_show(key)}?" for key in others[:5]
                 for guess in difflib.get_close_matches(key.replace("-", "_"), known, n=1)]
        parts.insert(0, f"unknown keys {_show(others)}"
                     + (f" ({' '.join(hints)})" if hints else "")
                     + f"; expected some of {sorted(field_names())}")
    raise ValueError("config: " + "; ".join(parts))


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
        ``desirable_weight * n_D / (undesirable_weight * n_U)`` (inf when n_U or lambda_U is 0
        and the numerator is not; NaN for 0/0).
    band : (float, float)
        The ``desirable_weight`` values that would put the ratio in [1, 4/3] with
        ``undesirable_weight`` fixed.

    Warns
    -----
    WeightBalanceWarning
        When ``warn`` and the ratio lies outside [1, 4/3], with the ratio and the band.
    """
    numerator = desirable_weight * num_desirable
    denominator = undesirable_weight * num_undesirable
    if denominator == 0:  # x / 0 is inf, but 0 / 0 has no value
        ratio = float("nan") if numerator == 0 else float("inf")
    else:
        ratio = numerator / denominator
    shown = "0/0, which has no value" if math.isnan(ratio) else f"{ratio:.3f}"
    if num_desirable == 0:
        band = (float("nan"), float("nan"))
    else:
        band = (denominator / num_desirable, 4.0 / 3.0 * denominator / num_desirable)
    if warn and (num_desirable == 0 or num_undesirable == 0):
        kind = "desirable" if num_desirable == 0 else "undesirable"
        warnings.warn(
            f"the data hold no {kind} examples, so the paper's Eq. 8 ratio "
            f"desirable_weight * n_D / (undesirable_weight * n_U) = {shown} cannot lie in "
            f"[1, 4/3]; the {kind} side of the KTO loss never acts",
            WeightBalanceWarning,
            stacklevel=2,
        )
    elif warn and not (1.0 <= ratio <= 4.0 / 3.0):
        if denominator == 0:
            advice = ("no desirable_weight puts it inside while undesirable_weight is 0; set "
                      "undesirable_weight > 0")
        else:
            advice = (f"with undesirable_weight = {undesirable_weight:g}, a desirable_weight in "
                      f"[{band[0]:.3f}, {band[1]:.3f}] would put it inside")
        warnings.warn(
            f"desirable_weight * n_D / (undesirable_weight * n_U) = {desirable_weight:g} * "
            f"{num_desirable} / ({undesirable_weight:g} * {num_undesirable}) = {shown} lies "
            f"outside the paper's Eq. 8 band [1, 4/3]; {advice}",
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
