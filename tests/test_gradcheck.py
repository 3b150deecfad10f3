"""gradcheck: the finite-difference check itself refuses bad arguments and reports a NaN as a
failure (it is exercised on every gradient in the subject files)."""

from __future__ import annotations

import numpy as np
import pytest

from minikto.gradcheck import gradcheck


def square(x):
    return float(x @ x), 2 * x


@pytest.mark.parametrize(
    ("fun", "x", "kwargs", "error", "message"),
    [(3, np.ones(3), {}, TypeError, "fun: expected a callable"),
     (lambda x: float(x @ x), np.ones(3), {}, TypeError, "fun: expected fun.x. to return a pair"),
     (lambda x: (0.0, np.ones(2)), np.ones(3), {}, ValueError,
      r"fun: expected a gradient of shape \(3,\); got \(2,\)"),
     (square, np.ones((3, 1)), {}, ValueError, "x: expected a non-empty 1-d vector"),
     (square, np.ones(0), {}, ValueError, "x: expected a non-empty 1-d vector"),
     (square, "abc", {}, TypeError, "x: expected a vector of real numbers; got str"),
     (square, np.ones(3), dict(mode="half"), ValueError, "mode: expected 'full' or"),
     (square, np.ones(3), dict(eps=0.0), ValueError, "eps: expected a step > 0"),
     (square, np.ones(3), dict(eps=float("nan")), ValueError, "eps: expected a step > 0"),
     (square, np.ones(3), dict(rtol=-1.0), ValueError, "rtol: expected a number >= 0"),
     (square, np.ones(3), dict(rtol=float("nan")), ValueError, "rtol: expected a finite"),
     (square, np.ones(3), dict(atol="0"), TypeError, "atol: expected a real number"),
     (square, np.ones(3), dict(mode="directions", n_directions=0), ValueError,
      "n_directions: expected an int >= 1; got 0"),
     (square, np.ones(3), dict(mode="directions", n_directions=2.5), ValueError,
      "n_directions: expected an int >= 1"),
     (square, np.ones(3), dict(blocks={"w": slice(5, 9)}), ValueError,
      r"blocks: expected slices that select coordinates of x \(size 3\); got 'w'"),
     (square, np.ones(3), dict(blocks={"w": [0, 1]}), ValueError, "blocks: expected slices")],
)
def test_gradcheck_refuses_bad_arguments_naming_them(fun, x, kwargs, error, message):
    with pytest.raises(error, match=message):
        gradcheck(fun, x, **kwargs)


def test_gradcheck_reports_a_nan_gradient_or_value_as_a_failure_not_an_exception():
    for fun in (lambda x: (float(x @ x), np.full(3, np.nan)), lambda x: (float("nan"), 2 * x)):
        report = gradcheck(fun, np.ones(3), blocks={"a": slice(0, 2), "b": slice(2, 3)})
        assert not report.passed and not bool(report)
        rows = report.table().splitlines()
        assert len(rows) == 3 and all(row.endswith("NO") for row in rows[1:])


# ------------------------------------------------------------------------------------------
# The pass mark comes from the error analysis (docs/CHECK.md, "The tolerance rule")


def _kto_case_17():
    """Notebook 02's exercise-3 case 17: beta 2, |z| from 15 to 32, gradients below 2e-7."""
    rng = np.random.default_rng(3)
    for _ in range(18):
        size = int(rng.integers(2, 9))
        logps, ref = rng.normal(-8, 6, size), rng.normal(-8, 6, size)
        labels = rng.random(size) < 0.5
        beta = float(rng.choice([0.05, 0.1, 0.5, 2.0]))
        weights = float(rng.uniform(0.2, 3)), float(rng.uniform(0.2, 3))
        z0 = float(rng.uniform(-2, 10))
    return logps, ref, labels, z0, beta, weights


def _one_minus_sigmoid(scale=1.0):
    logps, ref, labels, z0, beta, (wd, wu) = _kto_case_17()
    sign, weight = np.where(labels, 1.0, -1.0), np.where(labels, wd, wu)

    def fun(x):
        s = 1 / (1 + np.exp(-sign * beta * (x - ref - z0)))
        return float(np.mean(weight * (1 - s))), scale * -sign * beta * weight * s * (1 - s) \
            / x.size

    return fun, logps


def test_a_correct_gradient_below_the_old_absolute_floor_passes():
    fun, x = _one_minus_sigmoid()
    assert np.max(np.abs(fun(x)[1])) < 2e-7
    report = gradcheck(fun, x)
    assert report.passed, report.table()
    assert report.max_rel_error > 1e-6  # the old rtol = 1e-6 alone would have failed it
    assert 0 < report.blocks[0].error_to_bound <= 1


@pytest.mark.parametrize("scale", [2.0, 0.5, -1.0, 1.1])
def test_a_wrong_gradient_still_fails_there(scale):
    fun, x = _one_minus_sigmoid(scale)
    report = gradcheck(fun, x)
    assert not report.passed and report.blocks[0].error_to_bound > 1


def test_evaluations_are_two_per_coordinate_when_the_round_off_bound_decides():
    report = gradcheck(square, np.array([1.0, -2.0, 3.0]))
    assert report.passed and report.evaluations == 1 + 2 * 3
    directions = gradcheck(square, np.ones(5), mode="directions", n_directions=4)
    assert directions.passed and directions.evaluations == 1 + 2 * 4


def test_truncation_and_noise_are_measured_only_where_the_first_bound_fails():
    def wrong(x):
        return float(x @ x), 2 * x + 1e-3

    report = gradcheck(wrong, np.ones(3))
    # per coordinate 4 evaluations, and the noise once: 8 directions x 7 points
    assert not report.passed and report.evaluations == 1 + 4 * 3 + 8 * 7


def test_truncation_is_allowed_for_a_large_step_and_measured_not_assumed():
    def cubic(x):
        return float(np.sum(x ** 3)), 3 * x ** 2

    x = np.array([1.0, 2.0])
    report = gradcheck(cubic, x, eps=1e-2)  # D(h) - f' = h^2 (f'''/6) = 1e-4 exactly
    assert report.passed, report.table()
    assert report.max_abs_error == pytest.approx(1e-4, rel=1e-6)
    wrong = gradcheck(lambda v: (cubic(v)[0], cubic(v)[1] + 1e-3), x, eps=1e-2)
    assert not wrong.passed


def test_rtol_and_atol_are_optional_floors_under_the_bound():
    fun, x = _one_minus_sigmoid(0.5)
    assert not gradcheck(fun, x).passed
    assert gradcheck(fun, x, rtol=1.0).passed
    assert gradcheck(fun, x, atol=1.0).passed


def test_a_function_flat_at_the_step_gets_its_resolution_as_the_bound():
    """1 - sigmoid(36) is 2.3e-16: at h = 1e-6 the value does not move, so a gradient of
    3e-15 cannot be told from 0 by differences; the check says so by passing both, with
    the resolution of f as its bound, not by failing a correct gradient."""
    def fun(x, scale=1.0):
        s = 1 / (1 + np.exp(-x))
        return float(np.mean(1 - s)), scale * -s * (1 - s) / x.size

    x = np.array([36.0])
    assert gradcheck(fun, x).passed
    assert not gradcheck(lambda v: fun(v, 1e9), x).passed  # 1e9 times too large is seen
