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


def test_the_table_and_the_targets_read_a_result_of_every_kind():
    """Synthetic results (no timing): the report must not fail after a long run."""
    def times(median):
        return {"median": median, "q1": median, "q3": median, "min": median, "max": median,
                "n": 3}

    def result(name, memory):
        size = bench.SIZES[name]
        out = {"size": bench.asdict(size), "tokens": size.tokens,
               "time": {"train": times(1.0), "hand": times(0.9), "torch": times(2.5)},
               "memory": memory}
        if size.features != "onehot":
            out["matmul"] = {"gflops": 100.0}
            out["achieved_gflops"] = {"train": 80.0, "hand": 85.0, "torch": 30.0}
            out["matmul_fraction"] = {"train": 0.8, "hand": 0.85, "torch": 0.3}
        return out

    results = [
        result("tiny", {"tracemalloc_bytes": {"train": 10, "hand": 9}}),
        result("medium", {"tracemalloc_bytes": {}, "rss_peak_bytes": {"train": 2**20}}),
        result("large", {"rss_peak_bytes": {"train": 500 * 2**20, "torch": None}}),
    ]
    text = bench.table(results, "numpy")
    assert "large" in text and "peak memory" in text
    check = {"size": "large", "total_s": 12.0, "passed": True, "met": True}
    goals = {g["target"]: g["met"] for g in bench.targets(results, check, "numpy")}
    assert goals["tiny: (a) train step >= 3x torch"] is False  # 2.5x
    assert goals["large: (b) step by hand >= 2x torch"] is True  # 2.78x
    assert goals["large: step >= 75% of the measured matmul rate"] is True
    assert goals["large: peak memory <= 584 MiB"] is True
    gpu = [result("large", {"pool_peak_bytes": {"train": 2**30, "torch": 2**31}})]
    assert "GPU pool peak" in bench.table(gpu, "cupy")
