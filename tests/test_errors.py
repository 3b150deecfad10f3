"""Bad input gets a ValueError or TypeError naming the argument, the expectation and what came."""

import numpy as np
import pytest

from minikto import SoftmaxPolicy, kl_estimate, kto_loss
from minikto.backend import get_namespace
from minikto.objective import kto_objective

P = np.array([-1.0, -2.0, -3.0])
R = np.array([-1.5, -2.0, -2.5])
D = np.array([True, False, True])


@pytest.mark.parametrize(
    "kwargs,exc,pattern",
    [
        (dict(policy_logps=P[:2]), ValueError, r"reference_logps: expected shape \(2,\)"),
        (dict(reference_logps=R[:2]), ValueError, r"reference_logps: expected shape \(3,\)"),
        (dict(desirable=np.array([1, 0, 1])), TypeError, "desirable: expected a boolean"),
        (dict(desirable=D[:2]), ValueError, r"desirable: expected shape \(3,\)"),
        (dict(policy_logps=np.array([])), ValueError, "policy_logps: expected a non-empty"),
        (dict(policy_logps=np.array([np.nan, 0, 0])), ValueError, "policy_logps: expected finite"),
        (
            dict(reference_logps=np.array([np.inf, 0, 0])),
            ValueError,
            "reference_logps: expected fin",
        ),
        (dict(policy_logps=P.reshape(3, 1)), ValueError, r"policy_logps: expected shape \(B,\)"),
        (dict(policy_logps=[1.0, 2.0, 3.0]), TypeError, "policy_logps: expected an array"),
        (dict(policy_logps=np.array([1, 2, 3])), TypeError, "policy_logps: expected a floating"),
        (dict(beta=0.0), ValueError, "beta: expected a number > 0"),
        (dict(beta=-1.0), ValueError, "beta: expected a number > 0"),
        (dict(beta=float("nan")), ValueError, "beta: expected a finite"),
        (dict(beta="0.1"), TypeError, "beta: expected a real number"),
        (dict(desirable_weight=-1.0), ValueError, "desirable_weight: expected a number >= 0"),
        (dict(undesirable_weight=float("inf")), ValueError, "undesirable_weight: expected a fin"),
        (dict(z0=float("nan")), ValueError, "z0: expected a finite"),
        (dict(z0=np.zeros(2)), ValueError, "z0: expected a scalar"),
    ],
)
def test_kto_loss_refuses_bad_input_naming_the_argument(kwargs, exc, pattern):
    args = dict(policy_logps=P, reference_logps=R, desirable=D, z0=0.0)
    args.update(kwargs)
    with pytest.raises(exc, match=pattern):
        kto_loss(
            args.pop("policy_logps"),
            args.pop("reference_logps"),
            args.pop("desirable"),
            args.pop("z0"),
            **args,
        )


def test_arrays_of_two_backends_are_refused():
    strict = get_namespace("array_api_strict")
    with pytest.raises(TypeError, match="one array library"):
        kto_loss(P, strict.asarray(R), D, 0.0)
    with pytest.raises(TypeError, match="one array library"):
        kl_estimate(strict.asarray(P), R)


def test_kl_estimate_refuses_mismatched_shapes_and_nan():
    with pytest.raises(ValueError, match=r"kl_reference_logps: expected shape \(3,\)"):
        kl_estimate(P, R[:2])
    with pytest.raises(ValueError, match="kl_policy_logps: expected finite"):
        kl_estimate(np.array([np.nan, 1.0]), R[:2])


@pytest.mark.parametrize(
    "prompts,responses,pattern",
    [
        (
            [0, 1],
            [[1, 2], [3, 9]],
            r"responses: expected ids in \[0, 5\) \(or -1 for padding\); got 9",
        ),
        ([0, 1], [[1, 2], [3, -2]], r"responses: expected ids in \[0, 5\).*got -2"),
        (
            [0, 1],
            [[1, -1, 2], [3, 4, 4]],
            "responses: expected -1 padding only after the last token; row 0",
        ),
        ([0, 1], [[1, 2], [-1, -1]], "responses: expected at least one token per response; row 1"),
        ([0, 3], [[1, 2], [3, 4]], r"prompts: expected ids in \[0, 2\); got 3"),
        ([0], [[1, 2], [3, 4]], "responses: expected 1 rows, one per prompt"),
        ([], np.zeros((0, 2), dtype=int), "prompts: expected a non-empty batch"),
        ([0, 1], [1, 2], "responses: expected a 2-d array"),
        (
            [0, 1],
            [[0, 2], [3, 4]],
            "responses: expected nothing but -1 after the end token 0; row 0",
        ),
        ([0.0, 1.0], [[1, 2], [3, 4]], "prompts: expected integer ids"),
    ],
)
def test_policy_refuses_bad_token_arrays_naming_the_argument(prompts, responses, pattern):
    policy = SoftmaxPolicy(5, 2, eos_token=0)
    with pytest.raises((ValueError, TypeError), match=pattern):
        policy.sequence_logps(np.asarray(prompts), np.asarray(responses))


def test_policy_constructor_refuses_bad_arguments():
    with pytest.raises(ValueError, match="features: expected 'onehot' or a positive int"):
        SoftmaxPolicy(5, 2, features="mlp")
    with pytest.raises(ValueError, match="vocab_size: expected a positive int"):
        SoftmaxPolicy(0, 2)
    with pytest.raises(ValueError, match=r"eos_token: expected an id in \[0, 5\)"):
        SoftmaxPolicy(5, 2, eos_token=5)
    with pytest.raises(ValueError, match="dtype: expected 'float32' or 'float64'"):
        SoftmaxPolicy(5, 2, dtype="float16")


def test_objective_refuses_a_batch_of_one_for_the_batch_estimate_and_unknown_modes():
    policy = SoftmaxPolicy(5, 2, eos_token=0)
    one = (np.array([0]), np.array([[1, 0]]), np.array([True]))
    with pytest.raises(ValueError, match="batch_size.*at least 2 examples; got 1"):
        kto_objective(policy, policy.copy(), *one, z0="batch")
    out = kto_objective(policy, policy.copy(), *one, z0="exact")  # no estimate needed
    assert float(out.loss) == 0.5
    with pytest.raises(ValueError, match="z0: expected one of"):
        kto_objective(policy, policy.copy(), *one, z0="kl")
