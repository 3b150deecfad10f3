"""The optimizers check an update whole before changing anything: no broadcast, no NaN,
no inf in Adam's state, no write into a frozen policy's parameters or into arrays they were
given."""

from __future__ import annotations

import types

import numpy as np
import pytest

from minikto.training.optim import SGD, Adam, NonFiniteError


def params():
    return {"w": np.arange(6.0).reshape(2, 3), "b": np.ones(3)}


@pytest.fixture(params=[Adam, SGD])
def optimizer(request):
    return request.param(0.1)


def test_a_gradient_of_another_shape_is_refused_not_broadcast(optimizer):
    p = params()
    with pytest.raises(ValueError, match=r"grads\['w'\]: expected shape \(2, 3\) and dtype "
                                         r"float64 like the parameter; got shape \(1,\)"):
        optimizer.step(p, {"w": np.ones(1), "b": np.ones(3)})
    assert np.array_equal(p["w"], params()["w"]) and optimizer.t == 0


def test_a_gradient_of_another_dtype_is_refused(optimizer):
    with pytest.raises(ValueError, match="dtype float32"):
        optimizer.step(params(), {"w": np.ones((2, 3), dtype=np.float32), "b": np.ones(3)})


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_a_nan_or_inf_gradient_is_refused_and_nothing_changes(optimizer, bad):
    p = params()
    g = {"w": np.ones((2, 3)), "b": np.array([1.0, bad, 1.0])}
    with pytest.raises(ValueError, match=r"grads\['b'\]: expected finite values"):
        optimizer.step(p, g)
    assert all(np.array_equal(p[k], params()[k]) for k in p) and optimizer.t == 0


def test_a_gradient_whose_square_overflows_leaves_adam_untouched():
    adam, p = Adam(0.1), params()
    adam.step(p, {"w": np.ones((2, 3)), "b": np.ones(3)})
    state, before = adam.state_dict(), {k: v.copy() for k, v in p.items()}
    with pytest.raises(NonFiniteError, match=r"Adam's second moment v\['\w'\]"):
        adam.step(p, {"w": np.full((2, 3), 1e200), "b": np.ones(3)})
    assert adam.t == 1 and all(np.array_equal(p[k], before[k]) for k in p)
    for k, v in adam.state_dict().items():
        assert np.array_equal(v, state[k]) and np.all(np.isfinite(v))
    assert isinstance(NonFiniteError("x"), ValueError)  # the command line reports it in a line


def test_a_read_only_mapping_of_parameters_is_refused(optimizer):
    frozen = types.MappingProxyType(params())
    with pytest.raises(TypeError, match="params: expected the mutable dict of a trainable "
                                        "policy; got a read-only mapping"):
        optimizer.step(frozen, {"w": np.ones((2, 3)), "b": np.ones(3)})


def test_the_arrays_given_are_never_written_in_place(optimizer):
    p = params()
    arrays = dict(p)  # the same array objects
    g = {"w": np.ones((2, 3)), "b": np.ones(3)}
    g_before = {k: v.copy() for k, v in g.items()}
    for _ in range(3):
        optimizer.step(p, g)
    assert all(np.array_equal(arrays[k], params()[k]) for k in arrays)  # old arrays intact
    assert all(np.array_equal(g[k], g_before[k]) for k in g)
    assert not np.array_equal(p["w"], params()["w"])  # the dict's entries were replaced

