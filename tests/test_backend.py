"""The backend shim: stable helpers, namespace resolution, scatter-add."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import assert_close

from minikto import backend as B
from minikto.backend import get_namespace


def test_logsumexp_matches_the_naive_formula_on_moderate_inputs(xp):
    x = np.random.default_rng(0).normal(size=(4, 7))
    assert_close(B.logsumexp(xp.asarray(x), axis=1), np.log(np.exp(x).sum(axis=1)))


def test_log_softmax_rows_exponentiate_to_one(xp):
    x = xp.asarray(np.random.default_rng(1).normal(size=(3, 5)) * 50)
    assert_close(xp.sum(xp.exp(B.log_softmax(x)), axis=1), np.ones(3))
    assert_close(xp.sum(B.softmax(x), axis=1), np.ones(3))


def test_stable_helpers_raise_no_floating_point_warning_at_extreme_logits(xp):
    x = xp.asarray([-1e4, -50.0, 0.0, 50.0, 1e4])
    with np.errstate(over="raise", divide="raise", invalid="raise"):
        ls = B.log_sigmoid(x)
        s = B.sigmoid(x)
        lse = B.logsumexp(xp.reshape(x, (1, 5)), axis=1)
    assert np.all(np.isfinite(B.to_numpy(ls)))
    assert_close(ls, [-1e4, -50.0, -np.log(2), -np.exp(-50.0), 0.0], rtol=1e-15, atol=1e-300)
    assert_close(
        s,
        [0.0, np.exp(-50.0) / (1 + np.exp(-50.0)), 0.5, 1 / (1 + np.exp(-50.0)), 1.0],
        rtol=1e-15,
        atol=1e-300,
    )
    assert_close(lse, [1e4])


def test_sigmoid_of_x_and_minus_x_sum_to_one(xp):
    x = xp.asarray(np.linspace(-30, 30, 61))
    assert_close(B.sigmoid(x) + B.sigmoid(-x), np.ones(61), rtol=1e-15)


def test_scatter_add_is_the_transpose_of_a_row_gather(xp):
    rng = np.random.default_rng(2)
    index = rng.integers(0, 4, size=9)
    values = rng.normal(size=(9, 3))
    expected = np.zeros((4, 3))
    for n, i in enumerate(index):
        expected[i] += values[n]
    assert_close(B.scatter_add(xp.asarray(values), xp.asarray(index), 4), expected)


def test_mixing_two_array_libraries_is_a_type_error_naming_both():
    strict = B.get_namespace("array_api_strict")
    with pytest.raises(TypeError, match="one array library"):
        B.array_namespace(np.ones(2), strict.ones(2))


def test_unknown_backend_and_dtype_names_are_refused_with_the_argument_named():
    with pytest.raises(ValueError, match="backend"):
        B.get_namespace("no_such_array_library")
    with pytest.raises(ValueError, match="dtype"):
        B.resolve_dtype(B.get_namespace("numpy"), "int8")


def test_to_numpy_returns_equal_numpy_arrays(xp):
    a = xp.asarray([1.0, 2.0])
    out = B.to_numpy(a)
    assert isinstance(out, np.ndarray)
    np.testing.assert_array_equal(out, [1.0, 2.0])


def test_get_namespace_refuses_what_is_not_an_array_library_naming_it():
    with pytest.raises(TypeError, match="backend: expected a name such as 'numpy'.*; got int"):
        get_namespace(3)
    with pytest.raises(ValueError, match="backend: 'json' is not an array API library"):
        get_namespace("json")
    with pytest.raises(ValueError, match="backend: expected 'numpy', 'cupy', 'array_api_strict' "
                                         "or an importable array library; got 'no_such_lib'"):
        get_namespace("no_such_lib")
    assert get_namespace(np) is get_namespace("numpy")  # a module is accepted by its name


def test_get_namespace_never_imports_a_module_it_does_not_know(monkeypatch):
    import sys
    import types

    monkeypatch.delitem(sys.modules, "this", raising=False)
    with pytest.raises(ValueError, match="backend: 'this' is not an array API library minikto "
                                         "knows; expected one of .*nothing was imported"):
        B.get_namespace("this")
    assert "this" not in sys.modules  # the Zen of Python was not printed
    for name in ("", "os.path", "../x"):
        with pytest.raises(ValueError, match="backend: "):
            B.get_namespace(name)
    assert B.get_namespace(np) is B.get_namespace("numpy")  # a library's module itself
    with pytest.raises(ValueError, match="backend: 'json' is not an array API library"):
        B.get_namespace(__import__("json"))
    with pytest.raises(ValueError, match="is not an array API library"):
        B.get_namespace(types.ModuleType("fake"))


def test_to_numpy_falls_back_to_the_array_protocol_without_dlpack():
    class OnlyArrayProtocol:  # neither NumPy nor DLPack: what a third library might be
        def __array__(self, dtype=None, copy=None):
            return np.arange(3.0)

    np.testing.assert_array_equal(B.to_numpy(OnlyArrayProtocol()), [0.0, 1.0, 2.0])
    np.testing.assert_array_equal(B.to_numpy([1, 2]), [1, 2])
