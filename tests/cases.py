"""Hypothesis strategies, finite-difference checks and extreme inputs shared by the test files.

Finite differences (float64, step ``H = 1e-6``, through :func:`minikto.gradcheck`): a block passes
when its norm-wise relative error is at most ``1e-6``, or when its absolute error is under the
round-off floor of a central difference, ``16 * eps * max(1, |f|) / H`` (about ``3.6e-9`` for
``|f| <= 1``): each of the two values of f carries a rounding error of a few ``eps * |f|``, and the
quotient divides their difference by ``2H``. Nothing finer can be resolved by finite differences,
and the floor is what lets a block whose true gradient is (nearly) zero pass.

Extremes: logits and log-ratios up to +-1e4, beta from 1e-6 to 1e3, float32 and float64, checked
under ``numpy.errstate(**RAISE)`` (underflow to zero is allowed: ``exp(-1e7)`` is 0, and that is
the right answer).
"""

from __future__ import annotations

import numpy as np
from conftest import _cupy_available
from hypothesis import strategies as st

from minikto import SoftmaxPolicy
from minikto.backend import to_numpy
from minikto.gradcheck import gradcheck
from minikto.objective import kto_objective

BACKENDS = ["numpy", "array_api_strict"] + (["cupy"] if _cupy_available() else [])


H = 1e-6  # the finite-difference step


EPS = float(np.finfo(np.float64).eps)


RTOL = 1e-6


def fd_floor(value: float) -> float:
    """The round-off floor of a central difference of a function whose value is ``value``."""
    return 16 * EPS * max(1.0, abs(value)) / H


def check(fun, x, blocks=None):
    """gradcheck with this file's tolerance; returns the report after asserting it passed."""
    x = np.asarray(x, dtype=np.float64)
    report = gradcheck(fun, x, blocks=blocks, eps=H, rtol=RTOL, atol=fd_floor(fun(x)[0]))
    assert report.passed, "\n" + report.table()
    return report


BETAS = st.floats(-2.0, 1.0).map(lambda e: 10.0**e)  # beta in [0.01, 10], log-uniform


WEIGHTS = st.floats(0.0, 3.0)


LOGPS = st.floats(-30.0, 5.0)


@st.composite
def labels(draw, batch: int, kind: str) -> np.ndarray:
    """A batch composition: "desirable" (all), "undesirable" (all), or "mixed" (both kinds;
    a batch of one is then desirable)."""
    if kind == "desirable" or (kind == "mixed" and batch == 1):
        return np.ones(batch, dtype=bool)
    if kind == "undesirable":
        return np.zeros(batch, dtype=bool)
    mask = np.array(draw(st.lists(st.booleans(), min_size=batch, max_size=batch)))
    if mask.all() or not mask.any():
        mask[draw(st.integers(0, batch - 1))] = not mask[0]
    return mask


KINDS = ["desirable", "undesirable", "mixed"]


def vectors(batch: int, elements=LOGPS):
    return st.lists(elements, min_size=batch, max_size=batch).map(np.array)


@st.composite
def unpaired_batches(draw, kind: str = "mixed", elements=LOGPS):
    """(backend, policy_logps, reference_logps, desirable) with 1 <= B <= 8."""
    backend = draw(st.sampled_from(BACKENDS))
    batch = draw(st.integers(1, 8))
    policy = draw(vectors(batch, elements))
    reference = draw(vectors(batch, elements))
    return backend, policy, reference, draw(labels(batch, kind))


@st.composite
def responses(draw, batch: int, vocab: int, length: int, eos: int | None) -> np.ndarray:
    """Valid padded responses (B, T): 1..T tokens, the end token only last, then -1s."""
    ordinary = [v for v in range(vocab) if v != eos]
    rows = []
    for _ in range(batch):
        n = draw(st.integers(1, length))
        body = draw(st.lists(st.sampled_from(ordinary), min_size=n - 1, max_size=n - 1))
        last = draw(st.integers(0, vocab - 1))  # the end token, or a response cut short
        rows.append(body + [last] + [-1] * (length - n))
    return np.array(rows, dtype=np.int64)


@st.composite
def policy_shapes(draw) -> dict:
    """The constructor arguments of a small random SoftmaxPolicy."""
    vocab = draw(st.integers(2, 6))
    return dict(
        vocab_size=vocab,
        num_prompts=draw(st.integers(1, 3)),
        features=draw(st.just("onehot") | st.integers(1, 4)),
        backend=draw(st.sampled_from(BACKENDS)),
        eos_token=draw(st.none() | st.integers(0, vocab - 1)),
        init_std=draw(st.floats(0.1, 2.0)),
    )


@st.composite
def policy_batches(draw, min_batch: int = 1, kind: str = "mixed") -> tuple:
    """(policy, reference, prompts, responses, desirable) on the policy's backend."""
    shape = draw(policy_shapes())
    seed = draw(st.integers(0, 2**16))
    policy = SoftmaxPolicy(seed=seed, **shape)
    reference = SoftmaxPolicy(seed=seed + 1, **shape).copy()
    batch = draw(st.integers(min_batch, 6))
    length = draw(st.integers(1, 4))
    xp = policy.xp
    prompts = np.array(draw(st.lists(st.integers(0, shape["num_prompts"] - 1),
                                     min_size=batch, max_size=batch)))
    resp = draw(responses(batch, shape["vocab_size"], length, shape["eos_token"]))
    desirable = draw(labels(batch, kind))
    return policy, reference, xp.asarray(prompts), xp.asarray(resp), xp.asarray(desirable)


#: every reference-point mode; "fixed" stands for a number drawn in [-2, 5]
Z0_MODES = ["batch", "batch-grad", "exact", "zero", "fixed"]


def describe(policy, resp, desirable, z0) -> list[str]:
    """Labels of a case, for Hypothesis's statistics."""
    lab = to_numpy(desirable)
    padded = bool(np.any(to_numpy(resp) < 0))
    composition = "mixed" if 0 < lab.sum() < lab.size else ("all desirable" if lab.all()
                                                            else "all undesirable")
    return [
        f"backend {policy.backend}",
        f"features {'onehot' if policy.feature_spec == 'onehot' else 'dense'}",
        f"z0 {z0 if isinstance(z0, str) else 'fixed number'}",
        f"batch {composition}",
        f"end token {'none' if policy.eos_token is None else 'yes'}, padding {padded}",
        f"T = {resp.shape[1]}",
    ]


WIDE = st.floats(-1e4, 1e4)


WIDE_BETAS = st.floats(-6.0, 3.0).map(lambda e: 10.0**e)  # beta in [1e-6, 1e3]


def objective(case, permutation=None, **kw):
    """kto_objective of a policy_batches case, its batch optionally permuted."""
    policy, reference, prompts, resp, desirable = case
    if permutation is not None:
        idx = policy.xp.asarray(np.asarray(permutation))
        prompts, resp, desirable = (
            policy.xp.take(a, idx, axis=0) for a in (prompts, resp, desirable)
        )
    return kto_objective(policy, reference, prompts, resp, desirable, **kw)


def assert_same_objective(a, b):
    """Equal loss and gradients up to the rounding of a sum taken in another order."""
    assert abs(float(a.loss) - float(b.loss)) <= 1e-12 * max(1.0, abs(float(a.loss)))
    for k in a.grads:
        ga, gb = to_numpy(a.grads[k]), to_numpy(b.grads[k])
        assert np.max(np.abs(ga - gb)) <= 1e-12 * max(1e-300, np.max(np.abs(ga))) + 1e-16, k


RAISE = dict(over="raise", divide="raise", invalid="raise")


DTYPES = ["float32", "float64"]


EXTREME_BETAS = [1e-6, 1e-3, 0.1, 1.0, 1e3]


EXTREME_Z0_MODES = ["batch", "batch-grad", "exact", "zero", 0.3]


# log-ratios r = policy - reference reach +-2e4, so beta * (r - z0) reaches +-3e7
POLICY = [1e4, -1e4, 0.0, 1.0, -1.0, 1e4, -1e4, 5e3]


REFERENCE = [-1e4, 1e4, 0.0, 0.0, 0.0, 1e4, -1e4, -5e3]


DESIRABLE = [True, True, False, False, True, False, True, False]


def finite_fields(out) -> None:
    for name in out._fields:
        value = to_numpy(getattr(out, name))
        assert np.all(np.isfinite(value)), (name, value)


def extreme_policy(backend, dtype, features, seed):
    """A policy whose logits are +-1e4 (and sums of two such) at random."""
    policy = SoftmaxPolicy(5, 3, features=features, backend=backend, dtype=dtype, eos_token=0,
                           seed=seed)
    rng = np.random.default_rng(seed)
    theta = 1e4 * rng.choice([-1.0, 0.0, 1.0], size=policy.num_parameters)
    if features != "onehot":  # hidden units are about N(0, 1/2): push the logits to ~1e4
        theta *= 3.0
    policy.set_flat(theta)
    return policy
