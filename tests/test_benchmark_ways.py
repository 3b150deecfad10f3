"""The step benchmark times three ways of writing one KTO step; they must compute one thing.

(The benchmark itself never runs here; this only pins its three contenders to each other.)
"""

import os
import sys

import numpy as np
import pytest

from minikto.backend import to_numpy

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "benchmarks"))
bench = pytest.importorskip("bench_step")


def _max_rel_diff(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


@pytest.mark.parametrize("name", ["tiny", "small"])
def test_the_hand_composed_step_equals_the_step_train_runs(name):
    problem = bench.make_problem(bench.SIZES[name], "numpy", dtype="float64")
    a, b = bench.train_step(problem), bench.hand_step(problem)
    assert set(a) == set(b) == set(problem.policy.params)
    for k in a:
        np.testing.assert_allclose(to_numpy(b[k]), to_numpy(a[k]), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("name", ["tiny", "small"])
def test_the_torch_autograd_step_computes_the_same_gradient(name):
    pytest.importorskip("torch")
    problem = bench.make_problem(bench.SIZES[name], "numpy")
    ours = bench.train_step(problem)
    theirs = bench.TorchStep(problem, "cpu")()
    assert set(theirs) == set(ours)
    for k in ours:
        got = theirs[k].detach().numpy()
        assert got.shape == tuple(ours[k].shape)
        assert _max_rel_diff(got, to_numpy(ours[k])) <= 1e-4  # float32 on both sides
