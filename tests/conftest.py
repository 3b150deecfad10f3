"""Shared fixtures: every numerical test runs on each available array backend."""

from __future__ import annotations

import numpy as np
import pytest

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
