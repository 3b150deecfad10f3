"""Reference vectors: inputs and exact float64 outputs of the KTO losses, as JSON.

For anyone porting KTO to another framework (PyTorch, JAX, a C++ trainer...): the file holds
small batches, their inputs, and what minikto computes for them (loss, per-example losses,
rewards, gradients, z0), so a port can be checked number by number without installing
minikto. ``docs/VECTORS.md`` describes every key and shows a PyTorch check.

- :func:`make_vectors` builds the dict (deterministic: fixed seeds, float64), with a
  top-level ``conventions`` object that says, without minikto's code, what every number is;
- :func:`write_vectors` writes it as JSON, atomically;
- :func:`minikto.tools.vectors_check.check_vectors` (a module above this one) recomputes
  every case with minikto and lists the disagreements.

The case inputs live in :mod:`minikto.tools.vectors_cases` (below this module): cases ->
compute and write (here) -> check.

Floats are written by Python's ``json`` with ``repr``, the shortest decimal that reads back
to the same float64, so the file round-trips exactly.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from .._version import __version__
from ..backend import get_namespace, to_numpy
from ..data.atomic import atomic_write
from ..gradcheck import EPSILON, ROUNDING
from ..kto import kl_estimate, kto_loss
from ..losses import dpo_loss
from .vectors_cases import cases

__all__ = [
    "FORMAT",
    "VERSION",
    "CONVENTIONS",
    "compute_outputs",
    "compute_tolerances",
    "make_vectors",
    "write_vectors",
]

#: The ``format`` key of a vectors file.
FORMAT = "minikto-vectors"
#: The ``version`` key; bumped whenever a key changes meaning.
VERSION = 1

# Which arguments each function takes from a case's inputs, and which outputs it records.
_ARRAYS = {
    "kto_loss": ("policy_logps", "reference_logps"),
    "kto_loss_from_token_logps": ("policy_token_logps", "reference_token_logps"),
    "kl_estimate": ("kl_policy_logps", "kl_reference_logps"),
    "dpo_loss": (
        "policy_chosen_logps",
        "policy_rejected_logps",
        "reference_chosen_logps",
        "reference_rejected_logps",
    ),
}
_OUTPUTS = {
    "kto_loss": ("loss", "losses", "rewards", "grad_policy_logps", "grad_z0"),
    "kto_loss_from_token_logps": (
        "policy_logps",
        "reference_logps",
        "loss",
        "losses",
        "rewards",
        "grad_policy_token_logps",
        "grad_z0",
    ),
    "kl_estimate": ("z0", "grad_kl_policy_logps"),
    "dpo_loss": (
        "loss",
        "losses",
        "chosen_rewards",
        "rejected_rewards",
        "grad_policy_chosen_logps",
        "grad_policy_rejected_logps",
    ),
}


#: What every number of the file means: the top-level ``conventions`` object.
CONVENTIONS = {
    "dtype": "float64: every input and output; JSON floats written as the shortest decimal "
    "that reads back to the same float64",
    "units": "nats: log-probabilities are natural logarithms",
    "logps": "a sequence log-probability is the SUM over the completion's tokens of their "
    "log-probabilities (prompt and padding tokens masked out), not their mean; case "
    "kto_tokens_summed starts from token log-probabilities and a completion_mask",
    "logratio": "r_i = policy_logps[i] - reference_logps[i]",
    "rewards": "beta * r_i, detached (what TRL logs; HALOs logs r_i without beta)",
    "loss": "the mean over the B examples of the batch of the per-example losses; each "
    "example's weight (desirable_weight or undesirable_weight) is applied to its own loss "
    "before the mean, and desirable and undesirable examples share the one denominator B",
    "gradients": "of that mean loss: grad_x[i] = d loss / d x[i]; none for the reference "
    "log-probabilities (the reference model is frozen)",
    "z0": "z0 = max(0, mean_j(kl_policy_logps[j] - kl_reference_logps[j])) over the "
    "mismatched pairs of the batch, labels ignored, clamped after the mean; kto_loss takes "
    "z0 as a given number",
    "z0_detached": "TRL and HALOs detach z0 (as the paper does): no gradient flows through "
    "it, so a port written their way has none of the outputs listed in "
    "z0_gradient_outputs. Those are the gradients of minikto's z0 = 'batch-grad' mode, "
    "which lets the gradient flow through z0; chain them as "
    "grad_z0 * grad_kl_policy_logps[j]",
    "z0_gradient_outputs": ["grad_z0", "grad_kl_policy_logps"],
    "clamp_gradient_at_zero": "what a port must do: where the mean is exactly 0, d z0 / d "
    "kl_policy_logps[j] = 1/B (the gradient passes, as where(m >= 0, m, 0) gives); test it "
    "on case kl_at_zero. Library clamps differ at that point, and between versions (see "
    "docs/VECTORS.md for the behaviour measured on given versions of PyTorch and JAX); "
    "with z0 detached there is no such gradient",
    "tolerances": "each case's tolerances hold, output by output, the largest |port - "
    "stored| a correct float64 port may show: the rounding bound of docs/CHECK.md at the "
    "case's values, not a fixed constant",
}


# ------------------------------------------------------------------------------------------
# Computing a case's outputs from its inputs


def compute_outputs(function: str, inputs: dict, backend: str = "numpy") -> dict:
    """Run ``function`` on a case's inputs.

    ``function`` is "kto_loss", "kto_loss_from_token_logps" (the token log-probabilities of
    shape (B, L) summed over ``completion_mask``, then ``kto_loss``), "kl_estimate" or
    "dpo_loss". Returns the outputs as JSON-able Python floats and lists (float64
    throughout).
    """
    if function not in _ARRAYS:
        raise ValueError(f"function: expected one of {sorted(_ARRAYS)}; got {function!r}")
    xp = get_namespace(backend)
    arrays = [xp.asarray(inputs[k], dtype=xp.float64) for k in _ARRAYS[function]]
    extra = {}
    if function == "kto_loss_from_token_logps":
        mask = xp.asarray(inputs["completion_mask"], dtype=xp.bool)
        zero = xp.zeros_like(arrays[0])
        # log pi(y|x) = sum_t mask[t] * log pi(y_t | x, y_<t); d/d token = mask * d/d sum
        arrays = [xp.sum(xp.where(mask, a, zero), axis=1) for a in arrays]
        extra = {"policy_logps": arrays[0], "reference_logps": arrays[1]}
    if function in ("kto_loss", "kto_loss_from_token_logps"):
        desirable = xp.asarray(inputs["desirable"], dtype=xp.bool)
        result = kto_loss(
            *arrays,
            desirable,
            inputs["z0"],
            beta=inputs["beta"],
            desirable_weight=inputs["desirable_weight"],
            undesirable_weight=inputs["undesirable_weight"],
        )
        if function == "kto_loss_from_token_logps":
            grad = result.grad_policy_logps[:, None]
            extra["grad_policy_token_logps"] = xp.where(mask, grad, xp.zeros_like(grad))
    elif function == "kl_estimate":
        result = kl_estimate(*arrays)
    else:
        result = dpo_loss(*arrays, beta=inputs["beta"])
    return {
        key: _plain(extra[key] if key in extra else getattr(result, key))
        for key in _OUTPUTS[function]
    }


def _plain(x: Any) -> float | list:
    """A 0-d, 1-d or 2-d array as a float or (nested) lists of Python floats."""
    return to_numpy(x).astype(np.float64).tolist()


# ------------------------------------------------------------------------------------------
# How far a correct float64 port may be from each stored output


def compute_tolerances(function: str, inputs: dict, outputs: dict | None = None) -> dict:
    """The largest |port - stored| a correct float64 port may show, output by output.

    The rule of docs/CHECK.md ("The tolerance rule") at the case's values. With
    ``u = ROUNDING * EPSILON`` (16 roundings of 2**-52), ``lam`` the larger weight and
    ``Z_i = beta (|policy_i| + |reference_i| + |z0|)`` (DPO: its four log-probs) the size of
    the numbers that enter ``z_i``: a per-example loss ``u lam + u Z_i |loss_i|``; the mean
    ``u lam (B + 1) + u max Z |loss|``; a gradient ``u lam beta / B + u Z_i |grad_i|``
    (``grad_z0``: the sum over i); a reward ``u beta (|policy_i| + |reference_i|)``; a sum of
    token log-probs ``u sum_t |token_t|``; z0 ``u mean_j (|kl_policy_j| + |kl_reference_j|)``
    and its gradient ``u / B``. ``outputs``: the case's outputs (computed when None).
    """
    u = ROUNDING * EPSILON
    out = compute_outputs(function, inputs) if outputs is None else outputs
    x = {
        k: np.asarray(v, dtype=np.float64) if isinstance(v, list) else v for k, v in inputs.items()
    }
    y = {k: np.abs(np.asarray(v, dtype=np.float64)) for k, v in out.items()}
    if function == "kl_estimate":
        size = np.abs(x["kl_policy_logps"]) + np.abs(x["kl_reference_logps"])
        return {
            "z0": u * float(np.mean(size)),
            "grad_kl_policy_logps": [u / size.shape[0]] * size.shape[0],
        }
    if function == "dpo_loss":
        c = np.abs(x["policy_chosen_logps"]) + np.abs(x["reference_chosen_logps"])
        r = np.abs(x["policy_rejected_logps"]) + np.abs(x["reference_rejected_logps"])
        size, batch = x["beta"] * (c + r), c.shape[0]
        return {
            "loss": float(u * (batch + 1) + u * np.max(size) * y["loss"]),
            "losses": (u + u * size * y["losses"]).tolist(),
            "chosen_rewards": (u * x["beta"] * c).tolist(),
            "rejected_rewards": (u * x["beta"] * r).tolist(),
            **{
                key: (u * x["beta"] / batch + u * size * y[key]).tolist()
                for key in ("grad_policy_chosen_logps", "grad_policy_rejected_logps")
            },
        }
    tolerances = {}
    if function == "kto_loss_from_token_logps":
        mask = np.asarray(inputs["completion_mask"], dtype=bool)
        p, r = (
            np.sum(np.abs(x[k]), axis=1) for k in ("policy_token_logps", "reference_token_logps")
        )
        tolerances = {"policy_logps": (u * p).tolist(), "reference_logps": (u * r).tolist()}
        grad_magnitude = np.max(y["grad_policy_token_logps"], axis=1)
    else:
        p, r = np.abs(x["policy_logps"]), np.abs(x["reference_logps"])
        grad_magnitude = y["grad_policy_logps"]
    weight, batch = max(x["desirable_weight"], x["undesirable_weight"]), p.shape[0]
    size = x["beta"] * (p + r + abs(x["z0"]))
    grad = u * weight * x["beta"] / batch + u * size * grad_magnitude
    tolerances.update(
        loss=float(u * weight * (batch + 1) + u * np.max(size) * y["loss"]),
        losses=(u * weight + u * size * y["losses"]).tolist(),
        rewards=(u * x["beta"] * (p + r)).tolist(),
        grad_z0=float(np.sum(grad)),
    )
    if function == "kto_loss_from_token_logps":
        tolerances["grad_policy_token_logps"] = np.where(mask, grad[:, None], u).tolist()
    else:
        tolerances["grad_policy_logps"] = grad.tolist()
    return tolerances


# ------------------------------------------------------------------------------------------
# Public API


def make_vectors() -> dict:
    """Build the reference vectors (deterministic: the same dict on every call).

    Returns
    -------
    dict
        ``{"format": "minikto-vectors", "version": 1, "minikto_version": ...,
        "conventions": {...}, "cases": [...]}``; every case is ``{"name", "function",
        "description", "inputs", "outputs", "tolerances"}`` with plain Python floats, bools
        and lists (see docs/VECTORS.md); ``tolerances`` has the keys and shapes of
        ``outputs`` (:func:`compute_tolerances`).
    """
    return {
        "format": FORMAT,
        "version": VERSION,
        "minikto_version": __version__,
        "conventions": json.loads(json.dumps(CONVENTIONS)),  # a copy the caller may change
        "cases": [
            {
                **case,
                "outputs": compute_outputs(case["function"], case["inputs"]),
                "tolerances": compute_tolerances(case["function"], case["inputs"]),
            }
            for case in cases()
        ],
    }


def write_vectors(path: str | os.PathLike, vectors: dict | None = None) -> Path:
    """Write ``vectors`` (by default :func:`make_vectors`) to ``path`` as JSON, atomically.

    The JSON goes to a temporary file in the same folder, is flushed to disk, and then
    replaces ``path`` in one ``os.replace`` (:func:`minikto.data.atomic.atomic_write`): a
    reader sees the old file or the new one, never half of one. A new file gets the usual
    permissions (``0o666`` less the umask), a replaced one keeps its own. Returns the path
    written.

    Raises
    ------
    ValueError
        If the folder does not exist, or ``vectors`` holds NaN or infinity.
    OSError
        If writing fails (a full disk...), naming ``path``; the old file is then intact.
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise ValueError(f"path: expected a file in an existing folder; got {str(path)!r}")
    text = json.dumps(make_vectors() if vectors is None else vectors, indent=2, allow_nan=False)
    try:
        with atomic_write(path, "w", encoding="utf-8", newline="\n") as f:
            f.write(text + "\n")
    except OSError as err:  # name the user's file, not the hidden temporary one
        cause = err.__cause__ if isinstance(err.__cause__, OSError) else err  # the OS's reason
        error = type(err)(f"{path}: could not write the vectors file: {cause.strerror or cause}")
        error.errno = err.errno
        raise error from err
    return path
