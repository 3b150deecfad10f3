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
