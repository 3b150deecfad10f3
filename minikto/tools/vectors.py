"""Reference vectors: inputs and exact float64 outputs of the KTO losses, as JSON.

For anyone porting KTO to another framework (PyTorch, JAX, a C++ trainer...): the file holds
small batches, their inputs, and what minikto computes for them (loss, per-example losses,
rewards, gradients, z0), so a port can be checked number by number without installing
minikto. ``docs/VECTORS.md`` describes every key and shows a PyTorch check.

- :func:`make_vectors` builds the dict (deterministic: fixed seeds, float64);
- :func:`write_vectors` writes it as JSON, atomically;
- :func:`check_vectors` recomputes every case with minikto and lists the disagreements.

Floats are written by Python's ``json`` with ``repr``, the shortest decimal that reads back
to the same float64, so the file round-trips exactly.
"""

from __future__ import annotations

import json
import os
import tempfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from ..backend import get_namespace, to_numpy
from ..kto import kl_estimate, kto_loss
from ..losses import dpo_loss

__all__ = [
    "FORMAT",
    "VERSION",
    "check_vectors",
    "compute_outputs",
    "make_vectors",
    "write_vectors",
]

#: The ``format`` key of a vectors file.
FORMAT = "minikto-vectors"
#: The ``version`` key; bumped whenever a key changes meaning.
VERSION = 1

#: The seed of every case's inputs (each case mixes in a checksum of its own name).
SEED = 20240201

# Which arguments each function takes from a case's inputs, and which outputs it records.
_ARRAYS = {
    "kto_loss": ("policy_logps", "reference_logps"),
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


# ------------------------------------------------------------------------------------------
# Computing a case's outputs from its inputs


def compute_outputs(function: str, inputs: dict, backend: str = "numpy") -> dict:
    """Run ``function`` ("kto_loss", "kl_estimate" or "dpo_loss") on a case's inputs.

    Returns the outputs as JSON-able Python floats and lists (float64 throughout).
    """
    if function not in _ARRAYS:
        raise ValueError(f"function: expected one of {sorted(_ARRAYS)}; got {function!r}")
    xp = get_namespace(backend)
    arrays = [xp.asarray(inputs[k], dtype=xp.float64) for k in _ARRAYS[function]]
    if function == "kto_loss":
        desirable = xp.asarray(inputs["desirable"], dtype=xp.bool)
        result = kto_loss(
            *arrays,
            desirable,
            inputs["z0"],
            beta=inputs["beta"],
            desirable_weight=inputs["desirable_weight"],
            undesirable_weight=inputs["undesirable_weight"],
        )
    elif function == "kl_estimate":
        result = kl_estimate(*arrays)
    else:
        result = dpo_loss(*arrays, beta=inputs["beta"])
    return {key: _plain(getattr(result, key)) for key in _OUTPUTS[function]}


def _plain(x: Any) -> float | list[float]:
    a = to_numpy(x)
    return float(a) if a.ndim == 0 else [float(v) for v in a]


# ------------------------------------------------------------------------------------------
# The cases


def _rng(name: str) -> np.random.Generator:
    return np.random.default_rng([SEED, zlib.crc32(name.encode())])


def _logps(rng: np.random.Generator, logratios: Any) -> tuple[list[float], list[float]]:
    """Sequence log-probabilities (all <= -5) whose log-ratios are about ``logratios``.

    A base value in [-40, -5] is drawn per example; the reference sits ``max(r, 0)`` below
    it and the policy ``r`` above the reference, so both stay valid log-probabilities even
    for a log-ratio of +1e4. Both are rounded to 4 decimals so the inputs read easily; they
    are exact float64 values all the same, and the outputs are computed from them.
    """
    ratios = np.asarray(logratios, dtype=np.float64)
    base = -rng.uniform(5.0, 40.0, size=ratios.shape[0])
    reference = np.round(base - np.maximum(ratios, 0.0), 4)
    policy = np.round(reference + ratios, 4)
    return [float(v) for v in policy], [float(v) for v in reference]


def _case(name: str, function: str, description: str, inputs: dict) -> dict:
    return {
        "name": name,
        "function": function,
        "description": description,
        "inputs": inputs,
        "outputs": compute_outputs(function, inputs),
    }


def _kto(
    name: str,
    description: str,
    logratios: Any,
    desirable: Any,
    *,
    z0: float,
    beta: float = 0.1,
    desirable_weight: float = 1.0,
    undesirable_weight: float = 1.0,
) -> dict:
    policy, reference = _logps(_rng(name), logratios)
    inputs = {
        "policy_logps": policy,
        "reference_logps": reference,
        "desirable": [bool(d) for d in desirable],
        "z0": float(z0),
        "beta": float(beta),
        "desirable_weight": float(desirable_weight),
        "undesirable_weight": float(undesirable_weight),
    }
    return _case(name, "kto_loss", description, inputs)


def _kl(name: str, description: str, logratios: Any) -> dict:
    policy, reference = _logps(_rng(name), logratios)
    inputs = {"kl_policy_logps": policy, "kl_reference_logps": reference}
    return _case(name, "kl_estimate", description, inputs)


def _dpo(name: str, description: str, chosen: Any, rejected: Any, *, beta: float) -> dict:
    rng = _rng(name)
    pc, rc = _logps(rng, chosen)
    pr, rr = _logps(rng, rejected)
    inputs = {
        "policy_chosen_logps": pc,
        "policy_rejected_logps": pr,
        "reference_chosen_logps": rc,
        "reference_rejected_logps": rr,
        "beta": float(beta),
    }
    return _case(name, "dpo_loss", description, inputs)


def _cases() -> list[dict]:
    def normal(name: str, size: int, scale: float, shift: float = 0.0) -> np.ndarray:
        return shift + scale * _rng(name + "/ratios").standard_normal(size)

    mixed8 = [True, False, True, True, False, False, True, False]

    # 1. the reference point z0 (labels ignored, clamped at 0 after the mean)
    kl_positive = _kl(
        "kl_positive",
        "Mean mismatched log-ratio > 0: z0 is that mean, dz0/d kl_policy_logps = 1/B.",
        normal("kl_positive", 8, 1.0, shift=1.5),
    )
    kl_clamped = _kl(
        "kl_clamped",
        "Mean mismatched log-ratio < 0: z0 is clamped to 0 and its gradient is 0.",
        normal("kl_clamped", 8, 1.0, shift=-1.5),
    )
    kl_at_zero = _kl(
        "kl_at_zero",
        "Policy == reference, the mean is exactly 0: z0 = 0 and the gradient PASSES (1/B), "
        "the convention of torch.clamp(min=0) (torch.relu and torch.maximum differ here).",
        np.zeros(6),
    )
    cases = [kl_positive, kl_clamped, kl_at_zero]

    # 2. the KTO loss (z0 given, detached)
    cases += [
        _kto(
            "kto_at_initialisation",
            "Policy == reference and z0 = 0: every loss is 1/2, the loss is 0.5 and "
            "|grad| = beta/(4B) for every example.",
            np.zeros(8),
            mixed8,
            z0=0.0,
        ),
        _kto(
            "kto_mixed",
            "A mixed batch of 8 at the defaults (beta 0.1, weights 1) with z0 = 0.37.",
            normal("kto_mixed", 8, 3.0),
            mixed8,
            z0=0.37,
        ),
        _kto(
            "kto_only_desirable",
            "Every example desirable (no undesirable one in the batch).",
            normal("kto_only_desirable", 6, 3.0),
            [True] * 6,
            z0=0.2,
        ),
        _kto(
            "kto_only_undesirable",
            "Every example undesirable (no desirable one in the batch).",
            normal("kto_only_undesirable", 6, 3.0),
            [False] * 6,
            z0=0.2,
        ),
        _kto(
            "kto_z0_clamped",
            "z0 = 0 taken from case kl_clamped (the estimate was clamped).",
            normal("kto_z0_clamped", 8, 3.0),
            mixed8,
            z0=kl_clamped["outputs"]["z0"],
        ),
        _kto(
            "kto_z0_positive",
            "z0 > 0 taken from case kl_positive.",
            normal("kto_z0_positive", 8, 3.0, shift=1.5),
            mixed8,
            z0=kl_positive["outputs"]["z0"],
        ),
        _kto(
            "kto_saturated",
            "beta = 1 and |z| from 40 to 1e4 on both sides: losses are ~0 or ~weight and the "
            "gradients underflow towards 0 (exactly 0 once |z| > ~745). A port must not give "
            "inf or NaN here.",
            [40.0, -40.0, 800.0, -800.0, 1e4, -1e4, 40.0, -1e4],
            [True, True, True, True, True, False, False, False],
            z0=0.0,
            beta=1.0,
        ),
        _kto(
            "kto_extreme_weights",
            "desirable_weight = 13.33 (paper Eq. 8 with 10% of the desirable data kept) and "
            "undesirable_weight = 0: undesirable examples cost nothing and get no gradient.",
            normal("kto_extreme_weights", 8, 3.0),
            mixed8,
            z0=0.1,
            desirable_weight=13.33,
            undesirable_weight=0.0,
        ),
        _kto(
            "kto_imbalanced",
            "1 desirable example out of 10 with desirable_weight = 13.33, undesirable_weight = 1.",
            normal("kto_imbalanced", 10, 3.0),
            [True] + [False] * 9,
            z0=0.25,
            desirable_weight=13.33,
        ),
        _kto(
            "kto_tiny_beta",
            "beta = 1e-6: every loss is within ~1e-5 of weight/2 and |grad| ~ beta/(4B).",
            normal("kto_tiny_beta", 8, 5.0),
            mixed8,
            z0=0.5,
            beta=1e-6,
        ),
        _kto(
            "kto_large_beta",
            "beta = 1e3 with log-ratios of 1e-3 to 1: |z| from ~1 to ~1e3, from the slope of "
            "the sigmoid to full saturation.",
            [1e-3, -1e-3, 0.01, -0.01, 0.05, -0.05, 1.0, -1.0],
            [True, True, False, False, True, False, True, False],
            z0=0.0,
            beta=1e3,
        ),
        _kto(
            "kto_batch_of_one",
            "B = 1 (allowed by the loss; only the z0 estimate needs B >= 2).",
            [0.8],
            [False],
            z0=0.3,
        ),
    ]

    # 3. DPO (paired)
    cases += [
        _dpo(
            "dpo_policy_equals_reference",
            "Policy == reference: every margin is 0 and every loss is log 2.",
            np.zeros(6),
            np.zeros(6),
            beta=0.1,
        ),
        _dpo(
            "dpo_mixed",
            "8 pairs at beta = 0.1, some ordered right and some wrong.",
            normal("dpo_mixed/chosen", 8, 3.0),
            normal("dpo_mixed/rejected", 8, 3.0),
            beta=0.1,
        ),
        _dpo(
            "dpo_saturated",
            "beta = 1 and margins of +-40, +-800, +-2e4: a wrong pair's loss is ~|margin| "
            "with weight 1, a right pair's loss and gradient underflow to 0. "
            "log(sigmoid(h)) computed naively gives -inf here.",
            [20.0, -20.0, 400.0, -400.0, 1e4, -1e4],
            [-20.0, 20.0, -400.0, 400.0, -1e4, 1e4],
            beta=1.0,
        ),
        _dpo(
            "dpo_tiny_beta",
            "beta = 1e-6: every loss is within ~1e-5 of log 2.",
            normal("dpo_tiny_beta/chosen", 8, 5.0),
            normal("dpo_tiny_beta/rejected", 8, 5.0),
            beta=1e-6,
        ),
        _dpo(
            "dpo_large_beta",
            "beta = 1e3 with margins of 1e-3 to 1: from the slope of the sigmoid to saturation.",
            [1e-3, -1e-3, 0.02, -0.02, 1.0, -1.0],
            [0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
            beta=1e3,
        ),
        _dpo(
            "dpo_batch_of_one",
            "B = 1.",
            [0.5],
            [1.5],
            beta=0.1,
        ),
    ]
    return cases


# ------------------------------------------------------------------------------------------
# Public API


def make_vectors() -> dict:
    """Build the reference vectors (deterministic: the same dict on every call).

    Returns
    -------
    dict
        ``{"format": "minikto-vectors", "version": 1, "minikto_version": ...,
        "cases": [...]}``; every case is ``{"name", "function", "description", "inputs",
        "outputs"}`` with plain Python floats, bools and lists (see docs/VECTORS.md).
    """
    return {
        "format": FORMAT,
        "version": VERSION,
        "minikto_version": _minikto_version(),
        "cases": _cases(),
    }


def _minikto_version() -> str:
    try:
        from .. import __version__  # imported here: the package may import this module
    except ImportError:  # minikto imported without its __init__ (a broken editable install)
        from importlib.metadata import version

        return version("minikto")
    return __version__


def write_vectors(path: str | os.PathLike, vectors: dict | None = None) -> Path:
    """Write ``vectors`` (by default :func:`make_vectors`) to ``path`` as JSON, atomically.

    The JSON goes to a temporary file in the same folder, is flushed to disk, and then
    replaces ``path`` in one ``os.replace``: a reader sees the old file or the new one,
    never half of one. Returns the path written.
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise ValueError(f"path: expected a file in an existing folder; got {str(path)!r}")
    text = json.dumps(make_vectors() if vectors is None else vectors, indent=2, allow_nan=False)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def check_vectors(
    vectors: str | os.PathLike | dict,
    *,
    rtol: float = 1e-12,
    atol: float = 1e-15,
    backend: str = "numpy",
) -> list[str]:
    """Recompute every case with minikto and list where it disagrees with the file.

    Parameters
    ----------
    vectors : path or dict
        A vectors file (as written by :func:`write_vectors`) or the dict itself.
    rtol, atol : float
        A value passes when ``|computed - stored| <= atol + rtol * |stored|``. The default
        ``atol`` only absorbs values that underflow towards 0 (saturated gradients).
    backend : str
        The array backend to recompute with ("numpy", "array_api_strict"...).

    Returns
    -------
    list of str
        One line per disagreement (``"<case>: <output>[i]: stored ..., computed ..."``);
        empty when everything agrees.
    """
    if not isinstance(vectors, dict):
        path = Path(vectors)
        try:
            vectors = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
            raise ValueError(f"vectors file {path}: expected a JSON vectors file; {err}") from err
        if not isinstance(vectors, dict):
            raise ValueError(
                f"vectors file {path}: expected a JSON object; got {type(vectors).__name__}"
            )
    if vectors.get("format") != FORMAT or vectors.get("version") != VERSION:
        return [
            f"file: expected format {FORMAT!r} version {VERSION}; got format "
            f"{vectors.get('format')!r} version {vectors.get('version')!r}"
        ]
    failures = []
    for case in vectors.get("cases", []):
        name = case.get("name", "?")
        try:
            computed = compute_outputs(case["function"], case["inputs"], backend=backend)
        except (KeyError, TypeError, ValueError) as err:
            failures.append(f"{name}: cannot recompute ({type(err).__name__}: {err})")
            continue
        stored = case.get("outputs", {})
        for key in sorted(set(computed) ^ set(stored)):
            where = "missing from the file" if key in computed else "unknown"
            failures.append(f"{name}: output {key!r} is {where}")
        for key in computed.keys() & stored.keys():
            failures += _compare(f"{name}: {key}", stored[key], computed[key], rtol, atol)
    return failures


def _compare(label: str, stored: Any, computed: Any, rtol: float, atol: float) -> list[str]:
    want = np.asarray(stored, dtype=np.float64)
    got = np.asarray(computed, dtype=np.float64)
    if want.shape != got.shape:
        return [f"{label}: stored shape {want.shape}, computed shape {got.shape}"]
    bad = np.flatnonzero(~(np.abs(got - want) <= atol + rtol * np.abs(want)))
    out = []
    for i in bad:
        index = f"[{i}]" if want.ndim else ""
        w, g = want.reshape(-1)[i], got.reshape(-1)[i]
        out.append(
            f"{label}{index}: stored {float(w)!r}, computed {float(g)!r} (|diff| {abs(g - w):.3g})"
        )
    return out
