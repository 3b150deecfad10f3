"""Shared fixtures: every numerical test runs on each available array backend.

Also how the suite runs in parallel, the Hypothesis profiles, the experiments shared by
several files, and the count of generated gradient-check cases (see the sections below).
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
# Parallel runs
#
# With pytest-xdist installed (it is in the "test" extra), `python -m pytest` runs on every
# core (`-n auto`); `-n 0` runs in one process, `-n 4` on four workers, `-p no:xdist` without
# the plugin. Tests are handed out one by one to whichever worker is free, slowest files
# first, so that no worker is left with a long test while the other has finished; the files
# that share an expensive session fixture go to one worker together, so it runs once.

#: files whose tests take seconds each (notebooks, experiments, command-line runs)
SLOW_FILES = (
    "test_notebooks.py",
    "test_experiments.py",
    "test_figure_style.py",
    "test_minority.py",
    "test_train_logs.py",
    "test_cli.py",
    "test_resume_data.py",
    "test_run_folders.py",
)

#: file -> the group of files run by one worker (they share the ``quick_experiments`` fixture)
ONE_WORKER = {
    name: "quick_experiments"
    for name in (
        "test_experiments.py",
        "test_figure_style.py",
        "test_minority.py",
        "test_family_experiments.py",
    )
}


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config) -> None:
    options = config.option
    if not hasattr(options, "numprocesses") or hasattr(config, "workerinput"):
        return  # xdist not installed (or -p no:xdist), or this is a worker
    if options.numprocesses is None and not options.collectonly:
        options.numprocesses = "auto"


def pytest_collection_modifyitems(items) -> None:
    items.sort(key=lambda item: item.path.name not in SLOW_FILES)  # stable: order kept within


@pytest.hookimpl(tryfirst=True, optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """Under ``--dist load`` (the default): each test is its own unit of work, except that
    the files of one :data:`ONE_WORKER` group form a single unit."""
    if config.getvalue("dist") != "load":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class GroupedLoad(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return ONE_WORKER.get(nodeid.split("::")[0].rsplit("/")[-1], nodeid)

    return GroupedLoad(config, log)


# ------------------------------------------------------------------------------------------
# Hypothesis profiles
#
# "light" (the default) and "ci" (what .ci/run uses) are derandomized, so every run draws the
# same examples and a failure reproduces on any machine: "light" half the examples of each test
# that sizes its run with ``examples(n)``, "ci" ``n``. "thorough" draws at random, keeps the
# database and draws ten times ``n``. None has a deadline (timings on a shared 2-core machine
# are noise, not a property). ``HYPOTHESIS_PROFILE=thorough python -m pytest -q tests/test_kto.py``

_COMMON = dict(deadline=None, print_blob=True, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("light", derandomize=True, database=None, max_examples=25, **_COMMON)
settings.register_profile("ci", derandomize=True, database=None, max_examples=50, **_COMMON)
settings.register_profile("thorough", max_examples=500, **_COMMON)
EXAMPLES_SCALE = {"light": 0.5, "ci": 1, "thorough": 10}
HYPOTHESIS_PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "light")
if HYPOTHESIS_PROFILE not in EXAMPLES_SCALE:
    raise ValueError(
        f"HYPOTHESIS_PROFILE: expected one of {list(EXAMPLES_SCALE)}; got {HYPOTHESIS_PROFILE!r}"
    )
settings.load_profile(HYPOTHESIS_PROFILE)


def examples(n: int) -> int:
    """The example count of a test sized ``n`` under "ci": n/2 under "light", 10 n under
    "thorough" (never fewer than 1)."""
    return max(1, round(n * EXAMPLES_SCALE[HYPOTHESIS_PROFILE]))


# ------------------------------------------------------------------------------------------
# The experiments at their quick size, run once for the files that check them (test_experiments,
# test_figure_style, test_minority, test_family_experiments: one group of ONE_WORKER).


@pytest.fixture(scope="session")
def quick_experiments(tmp_path_factory) -> dict:
    """Every experiment at its quick size: name -> (ExperimentResult, its directory)."""
    import matplotlib

    matplotlib.use("Agg")
    from minikto.experiments import EXPERIMENTS, run_experiment

    root = tmp_path_factory.mktemp("experiments")
    return {
        name: (run_experiment(name, root / name, quick=True), root / name) for name in EXPERIMENTS
    }


# ------------------------------------------------------------------------------------------
# Counting generated gradient-check cases: a test calls ``count_case(name)`` once per
# generated example that passed its check; the totals are printed after the run.

GENERATED_CASES: Counter[str] = Counter()


def count_case(name: str) -> None:
    """Record one generated (and passed) gradient-check case of the function ``name``."""
    GENERATED_CASES[name] += 1


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error) -> None:
    """Under xdist, add up the cases each worker counted (sent in its ``workeroutput``)."""
    GENERATED_CASES.update(getattr(node, "workeroutput", {}).get("generated_cases", {}))


def pytest_sessionfinish(session) -> None:
    if hasattr(session.config, "workeroutput"):  # an xdist worker: report to the controller
        session.config.workeroutput["generated_cases"] = dict(GENERATED_CASES)


def pytest_terminal_summary(terminalreporter) -> None:
    if GENERATED_CASES:
        parts = ", ".join(f"{name} {n}" for name, n in sorted(GENERATED_CASES.items()))
        terminalreporter.write_line(
            f"hypothesis gradient checks ({HYPOTHESIS_PROFILE} profile): "
            f"{sum(GENERATED_CASES.values())} generated cases passed ({parts})"
        )
