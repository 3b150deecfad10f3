"""Data are checked once, where they enter; the training step runs the same math unchecked.

A :class:`~minikto.policy.TokenBatch` is the proof that a batch of prompts and responses was
checked (:meth:`~minikto.policy.SoftmaxPolicy.token_batch`); its rows are checked batches too.
The public functions called with raw arrays keep every check (their messages are specified
in test_checks, test_policy, test_kto and test_objective).
"""

import numpy as np
import pytest
from conftest import assert_close

from minikto import _checks, _token_checks
from minikto.backend import to_numpy
from minikto.data.feedback import sample_unpaired
from minikto.data.toy import default_task
from minikto.kto import mismatched_indices
from minikto.objective import batch_objective, kto_objective
from minikto.policy import SoftmaxPolicy, TokenBatch
from minikto.training.config import KTOConfig
from minikto.training.loop import Batches, batch_indices
from minikto.training.step import unpaired_step


def _batch(policy, rows=6, length=4, seed=0):
    rng = np.random.default_rng(seed)
    prompts = rng.integers(0, policy.num_prompts, size=rows)
    responses = to_numpy(policy.sample(prompts, length, seed=seed + 1))  # padded after eos
    return prompts, responses


@pytest.mark.parametrize("xp_name", ["numpy", "array_api_strict"])
def test_rows_of_a_checked_batch_are_the_checked_batch_of_those_rows(xp_name):
    policy = SoftmaxPolicy(6, 3, features=4, eos_token=0, seed=1, backend=xp_name)
    xp = policy.xp
    prompts, responses = _batch(policy)
    assert np.any(responses < 0), "the batch should contain padding"
    whole = policy.token_batch(prompts, responses)
    index = np.array([4, 1, 1, 5])
    rows = whole.take(xp.asarray(index))
    direct = policy.token_batch(prompts[index], responses[index])
    for field in ("prompts", "states", "targets", "mask"):
        np.testing.assert_array_equal(
            to_numpy(getattr(rows, field)), to_numpy(getattr(direct, field))
        )
    assert rows.shape == direct.shape == (4, 4)
    # the mismatched pairs of the batch estimate: prompt x_i with response y_{i-1}
    shift = mismatched_indices(6, np)
    kl = whole.take(xp.arange(6), responses_of=xp.asarray(shift))
    kl_direct = policy.token_batch(prompts, responses[shift])
    assert_close(policy.batch_logps(kl), policy.batch_logps(kl_direct), rtol=0, atol=0)
    assert_close(
        policy.batch_logps(whole), policy.sequence_logps(prompts, responses), rtol=0, atol=0
    )


def test_the_unchecked_passes_refuse_what_is_not_a_batch_checked_for_this_policy():
    policy = SoftmaxPolicy(6, 3, eos_token=0, seed=1)
    prompts, responses = _batch(policy)
    with pytest.raises(TypeError, match="batch: expected a TokenBatch checked by token_batch"):
        policy.batch_logps((prompts, responses))
    other = SoftmaxPolicy(7, 3, eos_token=0, seed=1)
    foreign = other.token_batch(prompts, responses)
    with pytest.raises(TypeError, match=r"\(6, 3, 0, 'float64'\); got one checked for \(7, 3, 0"):
        policy.batch_logps(foreign)
    as32 = policy.to("numpy", "float32")
    with pytest.raises(TypeError, match="float32"):
        as32.batch_logps_backward(policy.token_batch(prompts, responses), np.ones(6))
    assert isinstance(policy.token_batch(prompts, responses), TokenBatch)


def _count_checks(monkeypatch):
    """Count the calls of the checks of token batches and of log-prob vectors."""
    calls = {"token_batch": 0, "float_vector": 0, "bool_vector": 0}
    for module, name in (
        (_token_checks, "token_batch"),
        (_checks, "float_vector"),
        (_checks, "bool_vector"),
    ):
        original = getattr(module, name)

        def spy(*args, _name=name, _original=original, **kwargs):
            calls[_name] += 1
            return _original(*args, **kwargs)

        monkeypatch.setattr(module, name, spy)
    return calls


def test_the_training_step_checks_nothing_again_and_computes_what_kto_objective_does(
    monkeypatch,
):
    task = default_task()
    reference = task.base_policy().copy(frozen=True)
    policy = reference.copy(frozen=False)
    for name, value in policy.params.items():  # a policy a few steps from its reference
        policy.params[name] = value + 0.05
    data = sample_unpaired(task, 40, seed=3)
    config = KTOConfig(batch_size=8, z0="batch")
    calls = _count_checks(monkeypatch)
    batches = Batches(reference, data, task, seed=0, max_length=task.max_length)
    assert calls["token_batch"] == 1  # the dataset, once, when the batches are made
    step = batches.step(policy, reference, config, 0)
    assert calls == {"token_batch": 1, "float_vector": 0, "bool_vector": 0}

    rows = batch_indices(len(data), 8, 0, 0)
    raw = kto_objective(
        policy,
        reference,
        data.prompts[rows],
        data.responses[rows],
        data.desirable[rows],
        reference_logps=reference.sequence_logps(data.prompts[rows], data.responses[rows]),
    )
    assert calls["token_batch"] > 1 and calls["float_vector"] > 0  # the raw entry checks
    assert_close(step.loss, float(raw.loss), rtol=1e-14, atol=0)
    for name in raw.grads:
        assert_close(step.grads[name], raw.grads[name], rtol=1e-13, atol=1e-15)


def test_the_same_math_runs_checked_and_unchecked_in_every_z0_mode():
    policy = SoftmaxPolicy(5, 2, features=3, eos_token=0, seed=2, init_std=1.0)
    reference = SoftmaxPolicy(5, 2, features=3, eos_token=0, seed=4).copy()
    prompts, responses = _batch(policy, rows=5, length=3)
    desirable = np.array([True, False, True, True, False])
    batch = policy.token_batch(prompts, responses)
    for z0 in ("batch", "batch-grad", "exact", "zero", 0.25):
        checked = kto_objective(policy, reference, prompts, responses, desirable, z0=z0)
        unchecked = batch_objective(policy, reference, batch, desirable, z0=z0)
        assert float(checked.loss) == float(unchecked.loss)
        for name in checked.grads:
            np.testing.assert_array_equal(checked.grads[name], unchecked.grads[name])


def test_the_unpaired_step_refuses_nan_parameters_naming_the_log_probs():
    policy = SoftmaxPolicy(5, 2, eos_token=0, seed=0)
    reference = policy.copy()
    policy.set_flat(np.full(policy.num_parameters, np.nan))
    batch = reference.token_batch(np.array([0, 1]), np.array([[1, 0], [2, 0]]))
    with pytest.raises(ValueError, match="policy_logps: expected finite values; got 2 NaN"):
        unpaired_step(policy, reference, batch, np.array([True, False]), np.zeros(2), KTOConfig())
