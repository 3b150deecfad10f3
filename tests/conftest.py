"""Shared fixtures: every numerical test runs on each available array backend.

Also the Hypothesis profiles and the count of generated gradient-check cases (see the end of
this file).
"""

from __future__ import annotations

import os
from collections import Counter

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

from minikto.backend import get_namespace, to_numpy


def _cupy_available() -> bool:
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # ImportError, or CUDA errors on a machine without a GPU
        return False


BACKENDS = [
    "numpy",
    "array_api_strict",
    pytest.param(
        "cupy", marks=pytest.mark.skipif(not _cupy_available(), reason="CuPy with a GPU not found")
    ),
]


@pytest.fixture(params=BACKENDS)
def backend(request) -> str:
    """The name of an array backend: numpy, array_api_strict (2024.12), cupy when a GPU is."""
    return request.param


@pytest.fixture
def xp(backend):
    """The array namespace of ``backend``."""
    return get_namespace(backend)


def assert_close(actual, expected, *, rtol=1e-12, atol=1e-12):
    """assert_allclose after moving both sides to NumPy."""
    np.testing.assert_allclose(to_numpy(actual), to_numpy(expected), rtol=rtol, atol=atol)


# ------------------------------------------------------------------------------------------
# Hypothesis profiles
#
# "ci" (the default): derandomized, so every CI run draws the same examples and a failure
# reproduces on any machine; example counts are fixed per test; no deadline (timings on a
# shared 2-core runner are noise, not a property). "thorough": randomized, with the database,
# and ten times the examples of every test that sizes its run with ``examples(n)``. Choose it
# with ``HYPOTHESIS_PROFILE=thorough python -m pytest -q tests/test_properties.py``.

settings.register_profile(
    "ci",
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=50,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "thorough",
    deadline=None,
    max_examples=500,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
HYPOTHESIS_PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")
settings.load_profile(HYPOTHESIS_PROFILE)


def examples(n: int) -> int:
    """``n`` examples under the "ci" profile, ten times as many under "thorough"."""
    return n if HYPOTHESIS_PROFILE == "ci" else 10 * n


# ------------------------------------------------------------------------------------------
# Counting generated gradient-check cases: a test calls ``count_case(name)`` once per
# generated example that passed its check; the totals are printed after the run.

GENERATED_CASES: Counter[str] = Counter()


def count_case(name: str) -> None:
    """Record one generated (and passed) gradient-check case of the function ``name``."""
    GENERATED_CASES[name] += 1


def pytest_terminal_summary(terminalreporter) -> None:
    if GENERATED_CASES:
        parts = ", ".join(f"{name} {n}" for name, n in sorted(GENERATED_CASES.items()))
        terminalreporter.write_line(
            f"hypothesis gradient checks ({HYPOTHESIS_PROFILE} profile): "
            f"{sum(GENERATED_CASES.values())} generated cases passed ({parts})"
        )
