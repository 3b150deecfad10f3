"""The cases :func:`minikto.check_kto` runs a user's KTO implementation on.

Three groups, all float64 NumPy (converted to the user's framework at the call):

- ``vectors``: the inputs of the reference vectors' KTO cases
  (:mod:`minikto.tools.vectors_cases`; their outputs are not needed here); in
  ``z0="estimated"`` mode each is combined with a reference-point case of the same batch size;
- ``random``: ``num_random`` batches of 2 to 12 examples with random log-ratios, labels,
  ``beta``, weights and reference points (seeded, so a report can be reproduced);
- ``extremes``: saturated logits, batches of one label, a batch of two, policy == reference,
  beta 2 with |z| from 15 to 32, beta 10 with |r - z0| up to 50.

A sequence-level case holds token log-probs ``(N, T)`` and a response mask ``(N, T)`` padded on
the right, with the padding holding real-looking log-probs (as a model's output does).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .vectors_cases import cases as vector_inputs

__all__ = ["Case", "SequenceCase", "loss_cases", "sequence_cases"]


@dataclass(frozen=True)
class Case:
    """One batch for the loss check (arrays of shape (B,), float64 / bool)."""

    name: str  #: e.g. "random 17" or "vectors kto_mixed"
    group: str  #: "vectors", "random" or "extremes"
    policy_logps: np.ndarray
    reference_logps: np.ndarray
    desirable: np.ndarray
    z0: float  #: the reference point given to the function (z0="given" mode)
    kl_policy_logps: np.ndarray  #: mismatched pairs x_i, y_{(i-1) mod B} (estimated mode)
    kl_reference_logps: np.ndarray
    beta: float
    desirable_weight: float
    undesirable_weight: float

    @property
    def batch(self) -> int:
        return int(self.policy_logps.shape[0])

    def replace(self, **arrays: np.ndarray) -> Case:
        """A copy with some arrays replaced (used by finite differences)."""
        fields = dict(self.__dict__)
        fields.update(arrays)
        return Case(**fields)


@dataclass(frozen=True)
class SequenceCase:
    """One batch for the sequence-level check."""

    name: str
    group: str
    token_logps: np.ndarray  #: (N, T) float64, padding included
    mask: np.ndarray  #: (N, T) bool, True on the response tokens


# ------------------------------------------------------------------------------------------
# Building log-probs from log-ratios


def _logps(rng: np.random.Generator, ratios: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Policy and reference sequence log-probs (both <= -5) with the given log-ratios."""
    ratios = np.asarray(ratios, dtype=np.float64)
    base = -rng.uniform(5.0, 40.0, size=ratios.shape[0])
    reference = base - np.maximum(ratios, 0.0)
    return reference + ratios, reference


def _case(
    rng: np.random.Generator,
    name: str,
    group: str,
    ratios: np.ndarray,
    desirable: np.ndarray,
    kl_ratios: np.ndarray,
    *,
    z0: float,
    beta: float = 0.1,
    weights: tuple[float, float] = (1.0, 1.0),
) -> Case:
    policy, reference = _logps(rng, ratios)
    kl_policy, kl_reference = _logps(rng, kl_ratios)
    return Case(
        name, group, policy, reference, np.asarray(desirable, dtype=bool), float(z0),
        kl_policy, kl_reference, float(beta), float(weights[0]), float(weights[1]),
    )


# ------------------------------------------------------------------------------------------
# The three groups


_KTO_KEYS = {"policy_logps", "reference_logps", "desirable", "z0", "beta", "desirable_weight",
             "undesirable_weight"}


def _vector_cases(estimated: bool) -> list[Case]:
    cases = vector_inputs()
    kl_cases = [c["inputs"] for c in cases if c.get("function") == "kl_estimate"
                and {"kl_policy_logps", "kl_reference_logps"} <= c.get("inputs", {}).keys()]
    out = []
    for case in cases:
        x = case.get("inputs", {})
        if case.get("function") != "kto_loss" or not _KTO_KEYS <= x.keys():
            continue  # (other functions, or a case of another shape, e.g. token-level)
        batch = len(x["policy_logps"])
        kl_pairs = [k for k in kl_cases if len(k["kl_policy_logps"]) == batch]
        if estimated and not kl_pairs:
            continue  # no reference-point case of this batch size
        for k, kl in enumerate(kl_pairs if estimated else [None]):
            kl_p = np.asarray(kl["kl_policy_logps"] if kl else x["policy_logps"], dtype=float)
            kl_r = np.asarray(kl["kl_reference_logps"] if kl else x["reference_logps"], float)
            suffix = f" + kl {k}" if estimated else ""
            out.append(Case(
                f"vectors {case['name']}{suffix}", "vectors",
                np.asarray(x["policy_logps"], dtype=float),
                np.asarray(x["reference_logps"], dtype=float),
                np.asarray(x["desirable"], dtype=bool), float(x["z0"]), kl_p, kl_r,
                float(x["beta"]), float(x["desirable_weight"]), float(x["undesirable_weight"]),
            ))
    return out


def _random_cases(rng: np.random.Generator, count: int) -> list[Case]:
    out = []
    for i in range(count):
        batch = int(rng.integers(2, 13))
        desirable = rng.random(batch) < rng.uniform(0.2, 0.8)
        ratios = rng.normal(0.0, 10.0 ** rng.uniform(-1.0, 1.0), size=batch)
        kl_ratios = rng.normal(0.0, 1.5, size=batch)
        kl_ratios += rng.choice([-1.0, 1.0]) * rng.uniform(0.05, 1.0) - kl_ratios.mean()
        out.append(_case(
            rng, f"random {i}", "random", ratios, desirable, kl_ratios,
            z0=rng.uniform(-1.0, 3.0), beta=10.0 ** rng.uniform(-2.0, 0.5),
            weights=(rng.uniform(0.3, 3.0), rng.uniform(0.3, 3.0)),
        ))
    return out


def _extreme_cases(rng: np.random.Generator) -> list[Case]:
    mixed = np.array([True, False, True, False, False])
    kl = np.array([0.9, -0.4, 1.3, -0.2, 0.6])
    kl6 = np.append(kl, 0.1)
    return [
        _case(rng, "extremes saturated logits", "extremes",
              np.array([40.0, -40.0, 800.0, -800.0, 1e4, -1e4, 40.0, -1e4]),
              np.array([True] * 5 + [False] * 3),
              np.array([0.8, -0.5, 1.1, 0.3, -0.2, 0.9, -0.7, 0.4]), z0=0.3, beta=1.0),
        _case(rng, "extremes only desirable", "extremes", rng.normal(0, 3, 5), [True] * 5, kl,
              z0=0.4, weights=(1.5, 0.5)),
        _case(rng, "extremes only undesirable", "extremes", rng.normal(0, 3, 5), [False] * 5,
              kl, z0=0.4, weights=(1.5, 0.5)),
        _case(rng, "extremes batch of two", "extremes", np.array([1.7, -2.2]),
              [True, False], np.array([0.9, -0.3]), z0=0.3, weights=(1.3, 0.8)),
        _case(rng, "extremes batch of three", "extremes", np.array([1.7, -2.2, 0.4]),
              [True, False, False], np.array([0.9, -0.3, 0.5]), z0=0.3, weights=(1.3, 0.8)),
        _case(rng, "extremes policy == reference", "extremes", np.zeros(5), mixed,
              np.zeros(5), z0=0.0),
        # beta 2 and |z| from 15 to 32: gradients of 1e-14 to 1e-7 next to losses of ~1
        _case(rng, "extremes beta 2, |z| 15 to 32", "extremes",
              0.3 + np.array([7.5, -8.0, 12.0, -16.0, 9.5, -11.0]),
              [True, False, False, True, False, True], kl6, z0=0.3, beta=2.0,
              weights=(1.7, 0.6)),
        _case(rng, "extremes beta 10, |r - z0| up to 50", "extremes",
              0.5 + np.array([50.0, -50.0, 3.0, -3.0, 0.05, -0.05]),
              [True, False, True, False, False, True], kl6, z0=0.5, beta=10.0,
              weights=(1.2, 2.5)),
    ]


def loss_cases(seed: int, num_random: int, *, estimated: bool) -> list[Case]:
    """Every case of the loss check: vectors, then extremes, then random ones.

    Parameters
    ----------
    seed : int
        Seeds the random cases (and the base log-probs of the extremes).
    num_random : int
        How many random batches.
    estimated : bool
        True for ``z0="estimated"``: vector cases are combined with reference-point cases.
    """
    rng = np.random.default_rng([20240201, seed])
    return _vector_cases(estimated) + _extreme_cases(rng) + _random_cases(rng, num_random)


def sequence_cases(seed: int, count: int = 60) -> list[SequenceCase]:
    """Token log-probs and masks: random ones, plus full-length rows and one-token rows."""
    rng = np.random.default_rng([20240202, seed])
    out = []
    for i in range(count):
        rows, width = int(rng.integers(1, 7)), int(rng.integers(1, 11))
        lengths = rng.integers(1, width + 1, size=rows)
        if i % 3 == 0:
            lengths[0] = width  # a row with no padding: catches a dropped last token
        mask = np.arange(width)[None, :] < lengths[:, None]
        token_logps = -rng.uniform(0.01, 8.0, size=(rows, width))
        out.append(SequenceCase(f"random {i}", "random", token_logps, mask))
    full = np.ones((3, 4), dtype=bool)
    one = np.zeros((3, 4), dtype=bool)
    one[:, 0] = True
    out.append(SequenceCase("extremes full length", "extremes",
                            -rng.uniform(0.01, 8.0, size=(3, 4)), full))
    out.append(SequenceCase("extremes one token", "extremes",
                            -rng.uniform(0.01, 8.0, size=(3, 4)), one))
    return out
