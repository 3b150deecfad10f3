"""The notebooks' graders (minikto.exercises) accept each worked solution and reject known
wrong answers, with a hint and without printing the answer."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from minikto import KTOConfig, SoftmaxPolicy, default_task, exercises, sample_unpaired
from minikto.backend import sigmoid
from minikto.training.train import batch_indices

SOLUTIONS = Path(__file__).resolve().parent.parent / "notebooks" / "solutions"
BLOCK = re.compile(r"^# %% (exercise-\d+)\s*$", re.MULTILINE)


def solved(notebook: str, **names) -> dict:
    """Every worked solution of ``notebooks/solutions/<notebook>.py``, run in one namespace
    holding ``names`` (what the notebook defines before its exercises)."""
    text = (SOLUTIONS / f"{notebook}.py").read_text(encoding="utf-8")
    namespace = {"np": np, "sigmoid": sigmoid, **names}
    exec(compile(text, f"{notebook}.py", "exec"), namespace)  # noqa: S102 (our own file)
    return namespace


def assert_rejects(verdict: exercises.Verdict, *hint_words: str) -> None:
    assert not verdict.passed and verdict.status == "not right yet", str(verdict)
    for word in hint_words:
        assert word in verdict.hint, (word, verdict.hint)


def test_verdict_prints_one_line_naming_the_exercise():
    assert str(exercises.nb01_exercise_1(None)) == (
        "Exercise 1: not yet solved (set r_quarter above)"
    )
    assert str(exercises._correct(2)) == "Exercise 2: correct"
    assert not exercises.nb01_exercise_1("a lot").passed


# ------------------------------------------------------------------------------------------
# 01


def test_nb01_graders_accept_the_solutions_and_their_3_digit_roundings():
    s = solved("01_loss_aversion")
    assert exercises.nb01_exercise_1(s["r_quarter"]).passed
    assert exercises.nb01_exercise_1(round(s["r_quarter"], 2)).passed
    assert exercises.nb01_exercise_2(s["r_half_weight"]).passed
    assert exercises.nb01_exercise_2(round(s["r_half_weight"], 1)).passed
    assert exercises.nb01_exercise_3(s["largest_desirable_weight"]).passed
    assert exercises.nb01_exercise_3(5.33).passed


def test_nb01_graders_reject_known_mistakes_with_their_hint():
    s = solved("01_loss_aversion")
    assert_rejects(exercises.nb01_exercise_1(s["r_quarter"] - 8.0), "reference point")
    assert_rejects(exercises.nb01_exercise_1(8.0 - np.log(3) / 0.2), "above z0")
    assert_rejects(exercises.nb01_exercise_1(s["r_quarter"] * 1.02))
    assert_rejects(exercises.nb01_exercise_2(s["r_half_weight"] * 0.1), "r = z / beta")
    assert_rejects(exercises.nb01_exercise_2(-s["r_half_weight"]), "positive")
    assert_rejects(exercises.nb01_exercise_3(4.0), "smallest")
    assert_rejects(exercises.nb01_exercise_3(1 / 3), "n_D")


def test_a_verdict_never_contains_the_answer():
    s = solved("01_loss_aversion")
    for verdict, right in (
        (exercises.nb01_exercise_1(1.0), s["r_quarter"]),
        (exercises.nb01_exercise_2(1.0), s["r_half_weight"]),
        (exercises.nb01_exercise_3(1.0), s["largest_desirable_weight"]),
    ):
        for digits in (1, 2, 3):
            assert f"{right:.{digits}f}" not in str(verdict)


# ------------------------------------------------------------------------------------------
# 02


@pytest.fixture(scope="module")
def nb02():
    return solved("02_gradients_by_hand")


def test_nb02_gradient_graders_accept_the_solutions(nb02):
    assert exercises.nb02_exercise_1(nb02["bias_gradient"]).passed
    assert exercises.nb02_exercise_2(nb02["dpo_gradients"]).passed
    assert exercises.nb02_exercise_4(nb02["my_sequence_logps_backward"]).passed


def test_nb02_gradient_graders_reject_wrong_gradients_naming_the_block(nb02):
    def half_bias(policy, prompt, response):
        return 0.5 * nb02["bias_gradient"](policy, prompt, response)

    assert_rejects(exercises.nb02_exercise_1(half_bias), "gradcheck fails")

    def dpo_without_mean(*args):
        chosen, rejected = nb02["dpo_gradients"](*args)
        return chosen * len(chosen), rejected * len(rejected)

    assert_rejects(exercises.nb02_exercise_2(dpo_without_mean), "gradcheck fails")

    def overwrites_repeated_states(policy, prompts, responses, grad_logps):
        grads = nb02["my_sequence_logps_backward"](policy, prompts, responses, grad_logps)
        grads["prev"] = grads["prev"].copy()
        grads["prev"][policy.bos_state] = 0.0  # forgets every first position
        return grads

    verdict = exercises.nb02_exercise_4(overwrites_repeated_states)
    assert_rejects(verdict, "prev", "bos_state")
    assert "prompt" not in verdict.hint.split(":")[0]  # only the failing block is named

    def no_bias(policy, prompts, responses, grad_logps):
        grads = nb02["my_sequence_logps_backward"](policy, prompts, responses, grad_logps)
        return {k: v for k, v in grads.items() if k != "bias"}

    assert_rejects(exercises.nb02_exercise_4(no_bias), "shapes")


def test_nb02_graders_report_a_stub_as_unsolved(nb02):
    def stub(*args):
        raise NotImplementedError

    for grader in (
        exercises.nb02_exercise_1,
        exercises.nb02_exercise_2,
        exercises.nb02_exercise_3,
        exercises.nb02_exercise_4,
        exercises.nb02_exercise_5,
    ):
        assert grader(stub).status == "not yet solved"


def test_nb02_kto_loss_grader_accepts_the_solution(nb02):
    assert exercises.nb02_exercise_3(nb02["my_kto_loss"]).passed


def test_nb02_kto_loss_grader_accepts_the_one_minus_sigmoid_form():
    def one_minus_sigmoid(
        policy_logps,
        reference_logps,
        desirable,
        z0,
        beta=0.1,
        desirable_weight=1.0,
        undesirable_weight=1.0,
    ):
        # notebook 01's form: lambda (1 - sigmoid(z)), with its gradient written the same way
        sign = np.where(desirable, 1.0, -1.0)
        weight = np.where(desirable, desirable_weight, undesirable_weight)
        z = sign * beta * (policy_logps - reference_logps - z0)
        loss = float(np.mean(weight * (1 - sigmoid(z))))
        grad = -weight * sign * beta * sigmoid(z) * (1 - sigmoid(z)) / len(z)
        return loss, grad

    assert exercises.nb02_exercise_3(one_minus_sigmoid).passed


def test_nb02_kto_loss_grader_rejects_a_wrong_loss_and_a_wrong_gradient(nb02):
    right = nb02["my_kto_loss"]

    def beta_outside(policy_logps, reference_logps, desirable, z0, beta=0.1, **weights):
        loss, grad = right(policy_logps, reference_logps, desirable, z0, beta=1.0, **weights)
        return beta * loss, beta * grad

    verdict = exercises.nb02_exercise_3(beta_outside)
    assert_rejects(verdict, "the loss")
    assert "FAILED" in verdict.details

    def gradient_of_the_sum(*args, **kwargs):
        loss, grad = right(*args, **kwargs)
        return loss, grad * len(grad)  # forgot the mean's 1/B

    assert_rejects(
        exercises.nb02_exercise_3(gradient_of_the_sum, num_gradient_cases=5),
        "the loss is right; the gradient",
    )


def test_nb02_training_step_grader_accepts_the_solution_and_rejects_a_step_uphill(nb02):
    verdict = exercises.nb02_exercise_5(nb02["kto_step"])
    assert verdict.passed, str(verdict)

    def uphill(policy, *args):
        nb02["kto_step"](policy, *args[:-1], -args[-1])

    assert_rejects(exercises.nb02_exercise_5(uphill), "rose")

    def returns_new_params(policy, *args):
        return {k: v - 1.0 for k, v in policy.params.items()}  # never touches the policy

    assert_rejects(exercises.nb02_exercise_5(returns_new_params), "did not change")


# ------------------------------------------------------------------------------------------
# 03


@pytest.fixture(scope="module")
def nb03():
    task = default_task()
    data = sample_unpaired(task, 2000, seed=0)
    reference = task.base_policy()
    moved = SoftmaxPolicy(task.vocab_size, task.num_prompts, eos_token=task.eos_token, seed=1)
    exercise_config = KTOConfig(desirable_weight=3.0, undesirable_weight=0.5, batch_size=48, seed=7)

    class Result:
        policy = moved

    names = dict(
        task=task,
        data=data,
        reference=reference,
        result=Result,
        exercise_config=exercise_config,
        batch_indices=batch_indices,
    )
    return names, solved("03_training_a_toy_policy", **names)


def test_nb03_graders_accept_the_solutions(nb03):
    names, s = nb03
    assert len(batch_indices(2000, 48, 7, 0)) != 48  # the exercise's first batch is not B
    assert exercises.nb03_exercise_1(
        s["first_loss"], names["task"], names["data"], names["exercise_config"]
    ).passed
    assert exercises.nb03_exercise_2(
        s["matched_mean"], names["result"].policy, names["reference"], names["data"]
    ).passed


def test_nb03_graders_reject_the_batch_size_and_the_mismatched_pairs(nb03):
    names, s = nb03
    config, data = names["exercise_config"], names["data"]
    first = batch_indices(len(data), config.batch_size, config.seed, 0)
    n_d = int(np.sum(data.desirable[first]))
    by_batch_size = (
        config.desirable_weight * n_d + config.undesirable_weight * (len(first) - n_d)
    ) / (2 * config.batch_size)
    assert_rejects(
        exercises.nb03_exercise_1(by_batch_size, names["task"], data, config), "count them"
    )
    share = data.num_desirable / len(data)
    whole = (3.0 * share + 0.5 * (1 - share)) / 2
    assert_rejects(exercises.nb03_exercise_1(whole, names["task"], data, config), "shares")
    policy, reference = names["result"].policy, names["reference"]
    shifted = data.responses[np.roll(np.arange(len(data)), 1)]
    mismatched = float(
        np.mean(
            policy.sequence_logps(data.prompts, shifted)
            - reference.sequence_logps(data.prompts, shifted)
        )
    )
    assert_rejects(exercises.nb03_exercise_2(mismatched, policy, reference, data), "mismatched")
    assert_rejects(
        exercises.nb03_exercise_2(-s["matched_mean"], policy, reference, data), "policy first"
    )


# ------------------------------------------------------------------------------------------
# 04 and 05


def test_nb04_graders_accept_the_solutions_and_reject_known_mistakes():
    s = solved("04_variations")
    assert exercises.nb04_exercise_1(s["threshold_log_odds"]).passed
    assert exercises.nb04_exercise_1(-1.695).passed
    assert_rejects(exercises.nb04_exercise_1(-s["threshold_log_odds"]), "sign")
    assert_rejects(exercises.nb04_exercise_1(0.5 * s["threshold_log_odds"]), "beta")
    assert exercises.nb04_exercise_2(s["contradiction_gradient"]).passed
    assert_rejects(exercises.nb04_exercise_2(0.0), "lambda_D = lambda_U")
    assert_rejects(exercises.nb04_exercise_2(2 * s["contradiction_gradient"]), "MEAN")


def test_nb05_graders_accept_the_solutions_and_reject_known_mistakes():
    mismatched = np.random.default_rng(0).normal(-17.0, 7.3, size=4000)
    s = solved("05_backends_and_scaling", mismatched=mismatched)
    assert exercises.nb05_exercise_1(s["onehot_parameters"], s["dense_parameters"]).passed
    assert_rejects(
        exercises.nb05_exercise_1(lambda v, p: v * (p + v + 1), s["dense_parameters"]),
        "begin-state",
    )
    assert_rejects(exercises.nb05_exercise_1(s["onehot_parameters"], lambda v, d: v * d), "bias")
    assert exercises.nb05_exercise_2(s["predicted_std_16"], mismatched).passed
    assert_rejects(
        exercises.nb05_exercise_2(4 * s["predicted_std_16"], mismatched), "one log-ratio"
    )
    assert_rejects(exercises.nb05_exercise_2(s["predicted_std_16"] / 4, mismatched))


def test_nb06_graders_accept_the_solutions_and_their_3_digit_roundings():
    s = solved("06_the_loss_family")
    assert exercises.nb06_exercise_1(s["ipo_target_margin"]).passed
    assert exercises.nb06_exercise_1(2.0).passed
    assert exercises.nb06_exercise_2(s["cdpo_turning_margin"]).passed
    assert exercises.nb06_exercise_2(1.39).passed
    assert exercises.nb06_exercise_3(s["hinge_kink_gradient"]).passed
    assert exercises.nb06_exercise_3(-0.0).passed


def test_nb06_graders_reject_known_mistakes_with_their_hint():
    s = solved("06_the_loss_family")
    target = s["ipo_target_margin"]
    assert_rejects(exercises.nb06_exercise_1(0.25 * target), "beta Delta")
    assert_rejects(exercises.nb06_exercise_1(-target), "sign")
    assert_rejects(exercises.nb06_exercise_1(2 * target), "1/2")
    assert_rejects(exercises.nb06_exercise_1(target * 1.02))
    turning = s["cdpo_turning_margin"]
    assert_rejects(exercises.nb06_exercise_2(-turning), "sign")
    assert_rejects(exercises.nb06_exercise_2(np.exp(turning)), "logarithm")
    assert_rejects(exercises.nb06_exercise_2(0.0), "v'(0)")
    assert_rejects(exercises.nb06_exercise_2(np.log(1 / 0.2)))  # log(1/q): not the log-odds
    assert_rejects(exercises.nb06_exercise_3(-0.5), "just below the kink")  # the left slope
    assert_rejects(exercises.nb06_exercise_3(-1.0), "beta Delta")
    assert_rejects(exercises.nb06_exercise_3(-0.25))  # half the left slope, a subgradient


def test_nb06_verdicts_never_contain_the_answer():
    s = solved("06_the_loss_family")
    for verdict, right in (
        (exercises.nb06_exercise_1(1.0), s["ipo_target_margin"]),
        (exercises.nb06_exercise_2(1.0), s["cdpo_turning_margin"]),
    ):
        for digits in (1, 2, 3):
            assert f"{right:.{digits}f}" not in str(verdict)
    assert str(exercises.nb06_exercise_3(None)) == (
        "Exercise 3: not yet solved (set hinge_kink_gradient above)"
    )


def test_predict_records_the_answer_before_the_reveal(capsys):
    choices = {"a": "it falls", "b": "it rises"}
    prediction = exercises.predict("What happens?", choices, "a")
    assert "you predict (a)" in capsys.readouterr().out
    assert prediction.reveal("a") is True
    assert exercises.predict("again", choices, None).reveal("b") is False
    with pytest.raises(ValueError, match="prediction: expected one of"):
        exercises.predict("What happens?", choices, "c")
    with pytest.raises(ValueError, match="outcome"):
        prediction.reveal("z")


def test_nb03_exercise_2_passes_any_summation_order_and_rejects_a_real_difference(nb03):
    """The bound is the round-off of the sums at hand: another order passes, 1e-9 off fails."""
    import math

    names, _ = nb03
    policy, reference, data = names["result"].policy, names["reference"], names["data"]
    own = np.asarray(policy.sequence_logps(data.prompts, data.responses))
    own_ref = np.asarray(reference.sequence_logps(data.prompts, data.responses))
    orders = [
        float(np.mean(own - own_ref)),
        math.fsum(own[::-1]) / len(data) - math.fsum(own_ref[::-1]) / len(data),
        float(sum((own - own_ref).tolist())) / len(data),  # left to right, one at a time
    ]
    for answer in orders:
        assert exercises.nb03_exercise_2(answer, policy, reference, data).passed, answer
    right = orders[0]
    assert not exercises.nb03_exercise_2(right + 1e-9 * abs(right), policy, reference, data).passed
