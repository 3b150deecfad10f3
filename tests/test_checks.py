"""The checks written once in ``minikto._checks``, including the guards that the public
functions never reach because a whole-signature check runs first."""

import numpy as np
import pytest

from minikto import _checks
from minikto.backend import get_namespace

NUMPY, STRICT = get_namespace("numpy"), get_namespace("array_api_strict")


def test_vectors_of_another_library_or_no_array_at_all_are_refused_naming_them():
    with pytest.raises(TypeError, match="x: expected a 1-d floating array; got list"):
        _checks.float_vector([1.0], "x", NUMPY)
    with pytest.raises(TypeError, match="x: expected an array of the same library"):
        _checks.float_vector(STRICT.asarray([1.0]), "x", NUMPY)
    with pytest.raises(TypeError, match=r"y: expected a boolean array of shape \(1,\); got list"):
        _checks.bool_vector([True], "y", NUMPY, length=1)
    with pytest.raises(TypeError, match="y: expected an array of the same library"):
        _checks.bool_vector(STRICT.asarray([True]), "y", NUMPY, length=1)
    with pytest.raises(TypeError, match="z0: expected an array of array_api_compat.numpy"):
        _checks.zero_point(STRICT.asarray(0.0), NUMPY, np.float64)


@pytest.mark.parametrize(
    ("value", "error", "message"),
    [(None, None, None), (3, None, None), (np.int64(2), None, None),
     (-1, ValueError, "seed: expected None or an int >= 0; got -1"),
     (1.0, TypeError, "seed: expected None or an int >= 0; got 1.0"),
     (np.bool_(True), TypeError, "seed: expected None or an int >= 0; got np.True_")],
)
def test_a_seed_is_none_or_an_int_at_least_zero(value, error, message):
    if error is None:
        assert _checks.seed(value) == (None if value is None else int(value))
    else:
        with pytest.raises(error, match=message):
            _checks.seed(value)


def test_finite_nonnegative_and_integer_refuse_what_is_not_a_number_of_their_kind():
    assert _checks.finite_nonnegative(np.float32(0.5), "init_std") == 0.5
    for bad in ("0.5", None, np.bool_(True), 1j):
        with pytest.raises(TypeError, match="init_std: expected a finite number >= 0"):
            _checks.finite_nonnegative(bad, "init_std")
    with pytest.raises(ValueError, match="length: expected a positive int; got 2.5"):
        _checks.integer(2.5, "length", minimum=1, what="a positive int", wrong_type=ValueError)
    assert _checks.positive_int(np.int32(4), "n") == 4
