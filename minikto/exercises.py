"""Graders of the notebooks' exercises: each takes your answer and says whether it is right.

One function per exercise, ``nbNN_exercise_K(answer, ...)``, called by the checking cell of
notebook NN, so that the check is not on screen next to the exercise. Each returns a
:class:`Verdict`; ``print(verdict)`` shows one line ``Exercise K: correct``, ``Exercise K:
not right yet (a hint)`` or ``Exercise K: not yet solved``, never the answer.

Where a grader needs the right value, it computes it from minikto itself (``kto_loss``,
``check_weight_balance``, ``train``, ...), never from a number written here. Code answers are
graded by minikto's own verdicts: :func:`minikto.gradcheck` for a gradient (finite
differences, its documented tolerance), :func:`minikto.check_kto` for a KTO loss.

Tolerances of number answers
----------------------------
A number worked out on paper is typed with a few digits. An answer passes when it agrees with
the right value to 3 significant digits, ``|answer - right| <= 5e-3 * max(|right|, floor)``:
the right value rounded to 3 digits is off by at most half a unit of the third digit, i.e.
``5e-3`` relative at worst; each known mistake a hint names lies further away (the tests in
``tests/test_exercises.py`` run each one through its grader). A
number computed with code from the same arrays (a mean of log-ratios, a loss of one batch)
differs from minikto's only by the order of floating-point sums, ``~ n * eps * |terms|``, and
passes at ``1e-9`` relative, far above that round-off and far below any mistake.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

# the package's public API only (what the notebooks use), not its internal modules
from . import (
    ExactEvaluator,
    KTOConfig,
    SoftmaxPolicy,
    WeightBalanceWarning,
    check_kto,
    check_weight_balance,
    default_task,
    dpo_loss,
    gradcheck,
    kl_estimate,
    kto_loss,
    kto_objective,
    mismatched_indices,
    preference_loss,
    sample_unpaired,
    train,
)

#: Relative agreement of an answer worked out on paper (3 significant digits).
PAPER_RTOL = 5e-3


@dataclass(frozen=True)
class Verdict:
    """The grade of one exercise; ``str(verdict)`` is what the notebook prints."""

    exercise: int
    status: str  #: "correct", "not right yet" or "not yet solved"
    hint: str = ""
    details: str = ""  #: a report printed above the verdict line (e.g. check_kto's table)

    @property
    def passed(self) -> bool:
        return self.status == "correct"

    def __bool__(self) -> bool:
        return self.passed

    def __str__(self) -> str:
        line = f"Exercise {self.exercise}: {self.status}" + (f" ({self.hint})" if self.hint else "")
        return f"{self.details}\n{line}" if self.details else line


def _correct(n: int, hint: str = "") -> Verdict:
    return Verdict(n, "correct", hint)


def _wrong(n: int, hint: str, details: str = "") -> Verdict:
    return Verdict(n, "not right yet", hint, details)


def _unsolved(n: int, what: str) -> Verdict:
    return Verdict(n, "not yet solved", what)


def _number(n: int, answer: Any, name: str) -> float | Verdict:
    """The answer as a float, or the verdict that it is missing or not a number."""
    if answer is None:
        return _unsolved(n, f"set {name} above")
    try:
        value = float(answer)
    except (TypeError, ValueError):
        return _wrong(n, f"{name} should be a number; got {type(answer).__name__}")
    if not np.isfinite(value):
        return _wrong(n, f"{name} should be a finite number; got {value}")
    return value


def _close(answer: float, right: float, rtol: float, floor: float = 1e-12) -> bool:
    return abs(answer - right) <= rtol * max(abs(right), floor)


def _rounding_bound(first: Any, second: Any, length: int) -> float:
    """How far a correct mean of ``first - second`` ((N,) sums of at most ``length`` token
    log-probs each) can lie from minikto's by the order of its float64 sums alone."""
    first, second = np.asarray(first, dtype=np.float64), np.asarray(second, dtype=np.float64)
    magnitude = float(np.mean(np.abs(first) + np.abs(second)))
    return (first.shape[0] + length + 2) * np.finfo(np.float64).eps * magnitude


def _root(f: Callable[[float], float], low: float, high: float) -> float:
    """The zero of a monotone f between low and high, by bisection to float64 resolution."""
    f_low = f(low)
    for _ in range(200):
        mid = 0.5 * (low + high)
        if mid in (low, high):
            break
        if (f(mid) > 0) == (f_low > 0):
            low, f_low = mid, f(mid)
        else:
            high = mid
    return 0.5 * (low + high)


def _call(n: int, fn: Callable, *args: Any) -> tuple[Any, Verdict | None]:
    """fn(*args), or the verdict that it is a stub or raised (named, without a traceback)."""
    try:
        return fn(*args), None
    except NotImplementedError:
        name = getattr(fn, "__name__", "<lambda>")
        return None, _unsolved(
            n, f"{'your function' if name == '<lambda>' else name} raises NotImplementedError"
        )
    except Exception as err:  # the student's code: report it in one line
        return None, _wrong(n, f"your code raised {type(err).__name__}: {err}")


def _desirable_loss_and_grad(r: float, *, z0: float, beta: float) -> tuple[float, float]:
    """One desirable example's loss and d loss / d r (lambda_D = 1), from minikto.kto_loss."""
    out = kto_loss(np.array([r]), np.zeros(1), np.array([True]), z0, beta=beta)
    return float(out.loss), float(out.grad_policy_logps[0])


# ------------------------------------------------------------------------------------------
# "Predict, then run"


@dataclass(frozen=True)
class Prediction:
    """A prediction recorded before the cell that reveals the result (see :func:`predict`)."""

    question: str
    choices: dict[str, str]
    answer: str | None

    def reveal(self, outcome: str) -> bool:
        """Print what the run found beside the recorded prediction; True when they agree."""
        if outcome not in self.choices:
            raise ValueError(f"outcome: expected one of {sorted(self.choices)}; got {outcome!r}")
        print(f"The run says ({outcome}) {self.choices[outcome]}.")
        if self.answer is None:
            print("You recorded no prediction; next time, commit to one before running.")
            return False
        agree = self.answer == outcome
        print(
            f"You predicted ({self.answer}): "
            + ("right." if agree else "not what happened; the text below explains why.")
        )
        return agree


def predict(question: str, choices: dict[str, str], answer: Any) -> Prediction:
    """Record a prediction before the result is shown, and print it.

    ``answer`` is one key of ``choices`` (or None: no prediction). The returned
    :class:`Prediction` is frozen; its ``reveal(outcome)`` is called after the run.
    """
    if answer is not None and answer not in choices:
        raise ValueError(f"prediction: expected one of {sorted(choices)} or None; got {answer!r}")
    print(question)
    for key, text in choices.items():
        print(f"  ({key}) {text}")
    print(
        "recorded before the run: "
        + (
            f"you predict ({answer})"
            if answer is not None
            else "no prediction (set `prediction` above)"
        )
    )
    return Prediction(question, dict(choices), answer)


# ------------------------------------------------------------------------------------------
# 01 · Loss aversion


def nb01_exercise_1(r_quarter: Any) -> Verdict:
    """The log-ratio r at which a desirable example loses 0.25 (beta 0.2, z0 8, lambda_D 1)."""
    answer = _number(1, r_quarter, "r_quarter")
    if isinstance(answer, Verdict):
        return answer
    z0, beta = 8.0, 0.2
    right = _root(lambda r: _desirable_loss_and_grad(r, z0=z0, beta=beta)[0] - 0.25, z0, z0 + 200.0)
    if _close(answer, right, PAPER_RTOL):
        return _correct(1)
    without_z0 = _root(
        lambda r: _desirable_loss_and_grad(r, z0=0.0, beta=beta)[0] - 0.25, 0.0, 200.0
    )
    if _close(answer, without_z0, PAPER_RTOL):
        return _wrong(1, "z is measured from the reference point: z = beta (r - z0)")
    if answer < z0:
        return _wrong(
            1,
            "below z0 a desirable example loses more than lambda_D / 2; a loss "
            "of 0.25 needs r above z0",
        )
    return _wrong(1, "solve lambda_D (1 - sigmoid(z)) = 0.25 for z, then z = beta (r - z0) for r")


def nb01_exercise_2(r_half_weight: Any) -> Verdict:
    """The positive r where a desirable example's gradient is half its largest (beta 0.1)."""
    answer = _number(2, r_half_weight, "r_half_weight")
    if isinstance(answer, Verdict):
        return answer
    beta = 0.1
    largest = _desirable_loss_and_grad(0.0, z0=0.0, beta=beta)[1]

    def half(r: float, b: float = beta) -> float:
        return _desirable_loss_and_grad(r, z0=0.0, beta=b)[1] / largest - 0.5

    if answer <= 0:
        return _wrong(
            2,
            "the question asks for the positive log-ratio (the weight is "
            "symmetric: the negative one mirrors it)",
        )
    right = _root(half, 0.0, 200.0)
    if _close(answer, right, PAPER_RTOL):
        return _correct(2)
    if _close(answer, right * beta, PAPER_RTOL):
        return _wrong(2, "that is z; the log-ratio is r = z / beta")
    return _wrong(
        2,
        "set p = sigmoid(z) and solve p (1 - p) = 1/8 for p, then z = log(p / "
        "(1 - p)) and r = z / beta",
    )


def nb01_exercise_3(largest_desirable_weight: Any) -> Verdict:
    """The largest lambda_D in the Eq. 8 band for 1300 desirable, 5200 undesirable, lambda_U 1."""
    answer = _number(3, largest_desirable_weight, "largest_desirable_weight")
    if isinstance(answer, Verdict):
        return answer
    n_d, n_u = 1300, 5200
    low, high = check_weight_balance(n_d, n_u, 1.0, 1.0, warn=False)[1]
    if _close(answer, high, PAPER_RTOL):
        return _correct(3)
    if _close(answer, low, PAPER_RTOL):
        return _wrong(3, "that is the smallest weight in the band; the ratio may go up to 4/3")
    flipped = check_weight_balance(n_u, n_d, 1.0, 1.0, warn=False)[1][1]
    if _close(answer, flipped, PAPER_RTOL):
        return _wrong(3, "the ratio is lambda_D n_D / (lambda_U n_U): n_D is the 1300 thumbs-up")
    return _wrong(3, "solve lambda_D n_D / (lambda_U n_U) <= 4/3 for lambda_D")


# ------------------------------------------------------------------------------------------
# 02 · Gradients by hand


def _gradcheck_verdict(
    n: int,
    fun: Callable,
    x: np.ndarray,
    *,
    blocks: dict | None = None,
    hints: dict[str, str] | None = None,
) -> Verdict:
    """gradcheck(fun, x) as a verdict; the student's exceptions become a one-line hint."""
    try:
        report = gradcheck(fun, x, blocks=blocks)
    except NotImplementedError:
        return _unsolved(n, "your function raises NotImplementedError")
    except Exception as err:  # the student's code: report it in one line
        return _wrong(n, f"your code raised {type(err).__name__}: {err}")
    if report.passed:
        return _correct(n, f"gradcheck: largest relative error {report.max_rel_error:.1e}")
    failing = [b.name for b in report.blocks if not b.passed]
    hint = "; ".join((hints or {}).get(name, "") for name in failing if (hints or {}).get(name))
    return _wrong(
        n,
        f"gradcheck fails on {', '.join(failing)}: relative error "
        f"{report.worst.max_rel_error:.1e}" + (f"; {hint}" if hint else ""),
        details=report.table(),
    )


def nb02_exercise_1(bias_gradient: Callable) -> Verdict:
    """``bias_gradient(policy, prompt, response)``: d log pi(response | prompt) / d bias."""
    policy = SoftmaxPolicy(vocab_size=7, num_prompts=3, eos_token=0, seed=7)
    probe = policy.copy(frozen=False)
    prompt, response = 2, np.array([4, 1, 5, 0, -1])

    def logp_of_bias(bias: np.ndarray) -> tuple[float, np.ndarray]:
        probe.params["bias"] = bias
        value = float(probe.sequence_logps(np.array([prompt]), response[None, :])[0])
        return value, np.asarray(bias_gradient(probe, prompt, response), dtype=np.float64)

    return _gradcheck_verdict(
        1,
        logp_of_bias,
        np.asarray(policy.params["bias"]),
        hints={"all": "the bias is added at every real position: sum onehot(y_t) - p_t over them"},
    )


def nb02_exercise_2(dpo_gradients: Callable) -> Verdict:
    """``dpo_gradients(chosen, rejected, ref_chosen, ref_rejected, beta)`` of dpo_loss's mean."""
    rng = np.random.default_rng(2)
    ref_w, ref_l = rng.normal(-5, 2, 6), rng.normal(-5, 2, 6)
    beta = 0.3

    def dpo_of_logps(x: np.ndarray) -> tuple[float, np.ndarray]:
        chosen, rejected = x[:6], x[6:]
        value = float(dpo_loss(chosen, rejected, ref_w, ref_l, beta=beta).loss)
        grads = dpo_gradients(chosen, rejected, ref_w, ref_l, beta)
        return value, np.concatenate([np.asarray(g, dtype=np.float64) for g in grads])

    return _gradcheck_verdict(
        2,
        dpo_of_logps,
        rng.normal(-5, 3, 12),
        hints={
            "all": "d(-log sigmoid(u))/du = -sigmoid(-u), u = beta (margin), and the mean "
            "divides by the number of pairs"
        },
    )


def nb02_exercise_3(my_kto_loss: Callable, *, num_gradient_cases: int = 50) -> Verdict:
    """``my_kto_loss(...) -> (loss, grad)`` like minikto.kto_loss with z0 given.

    The loss is graded by :func:`minikto.check_kto` (reference vectors, random and extreme
    batches, the name of a known mistake); the gradient by :func:`minikto.gradcheck` on
    ``num_gradient_cases`` random batches.
    """
    _, stub = _call(3, my_kto_loss, np.zeros(2), np.zeros(2), np.array([True, False]), 0.0)
    if stub is not None:
        return stub
    report = check_kto(lambda *args, **kw: my_kto_loss(*args, **kw)[0], z0="given")
    if not report.passed:
        return _wrong(
            3, "the loss: " + (report.diagnosis or "see the report above"), details=str(report)
        )
    rng = np.random.default_rng(3)
    for case in range(num_gradient_cases):
        size = int(rng.integers(2, 9))
        logps, ref_logps = rng.normal(-8, 6, size), rng.normal(-8, 6, size)
        labels = rng.random(size) < 0.5
        kwargs = dict(
            beta=float(rng.choice([0.05, 0.1, 0.5, 2.0])),
            desirable_weight=float(rng.uniform(0.2, 3)),
            undesirable_weight=float(rng.uniform(0.2, 3)),
        )
        z0 = float(rng.uniform(-2, 10))

        def mine(x: np.ndarray, r=ref_logps, d=labels, z=z0, k=kwargs) -> tuple:
            loss, grad = my_kto_loss(x, r, d, z, **k)
            return float(loss), np.asarray(grad, dtype=np.float64)

        verdict = _gradcheck_verdict(3, mine, logps)
        if not verdict.passed:
            return _wrong(
                3,
                f"the loss is right; the gradient, random case {case}: {verdict.hint}",
                details=verdict.details,
            )
    return _correct(
        3,
        "check_kto: the loss agrees with minikto's everywhere; gradcheck: your "
        f"gradient on {num_gradient_cases} random batches",
    )


#: The batch of exercise 4: prompt 2 appears twice (its table row collects both responses);
#: responses end at the end token 0 and are padded with -1, except one cut at T = 5.
_BACKWARD_PROMPTS = np.array([0, 2, 1, 2])
_BACKWARD_RESPONSES = np.array(
    [[3, 1, 0, -1, -1], [5, 5, 2, 6, 4], [0, -1, -1, -1, -1], [2, 4, 0, -1, -1]]
)


def nb02_exercise_4(sequence_logps_backward: Callable) -> Verdict:
    """``sequence_logps_backward(policy, prompts, responses, grad_logps)`` of a one-hot policy:
    a dict with the gradients of ``sum_i g_i log pi(y_i|x_i)`` for "prompt", "prev", "bias"."""
    policy = SoftmaxPolicy(vocab_size=7, num_prompts=3, eos_token=0, seed=11)
    probe = policy.copy(frozen=False)
    prompts, responses = _BACKWARD_PROMPTS, _BACKWARD_RESPONSES
    g = np.random.default_rng(4).normal(size=len(prompts))
    shapes = {k: tuple(v.shape) for k, v in policy.params.items()}

    def weighted_logps(theta: np.ndarray) -> tuple[float, np.ndarray]:
        probe.set_flat(theta)
        value = float(g @ probe.sequence_logps(prompts, responses))
        grads = sequence_logps_backward(probe, prompts, responses, g)
        got = {k: tuple(np.shape(v)) for k, v in dict(grads).items()}
        if got != shapes:
            raise ValueError(f"expected a dict of arrays with shapes {shapes}; got {got}")
        return value, probe.flatten_grads(grads)

    verdict = _gradcheck_verdict(
        4,
        weighted_logps,
        policy.get_flat(),
        blocks=policy.param_slices(),
        hints={
            "prompt": "row prompts[i] of the prompt table collects the logits gradient of every "
            "real position of response i, and a prompt may repeat (np.add.at)",
            "prev": "position t reads row y_{t-1} of the prev table, the begin state "
            "policy.bos_state at t = 1; padding (-1) contributes nothing",
            "bias": "the bias is added at every real position: it collects all their rows",
        },
    )
    if not verdict.passed:
        return verdict
    # micrograd-style: compare with minikto's own backward pass on the same batch
    probe.set_flat(policy.get_flat())  # gradcheck left it at a perturbed point
    yours = sequence_logps_backward(probe, prompts, responses, g)
    theirs = policy.sequence_logps_backward(prompts, responses, g)
    gap = max(float(np.max(np.abs(np.asarray(yours[k]) - np.asarray(theirs[k])))) for k in theirs)
    return _correct(
        4, f"{verdict.hint}; largest difference from minikto's sequence_logps_backward {gap:.1e}"
    )


def nb02_exercise_5(kto_step: Callable, *, learning_rate: float = 1.0) -> Verdict:
    """``kto_step(policy, reference, prompts, responses, desirable, z0, learning_rate,
    beta=0.1)``: one gradient-descent step on the batch's mean KTO loss, z0 held fixed,
    updating ``policy.params`` in place.

    Graded on 256 examples of the default toy at the reference policy: the batch's KTO loss
    (with the same z0) must fall and the exact expected utility must rise, each by more than
    round-off (``64 eps`` relative: a mean of 256 float64 terms).
    """
    task = default_task()
    reference = task.base_policy()
    data = sample_unpaired(task, 256, seed=5)
    batch = (data.prompts, data.responses, data.desirable)
    # the batch estimate at the reference: every log-ratio is 0, so z0 = max(0, mean) = 0
    shifted = data.responses[mismatched_indices(len(data))]
    logps = reference.sequence_logps(data.prompts, shifted)
    z0 = float(kl_estimate(logps, logps).z0)
    policy = reference.copy(frozen=False)
    evaluator = ExactEvaluator(task, reference)

    def loss_of(pol: SoftmaxPolicy) -> float:
        return float(kto_objective(pol, reference, *batch, z0=z0, beta=0.1, backward=False).loss)

    before, utility_before = loss_of(policy), evaluator(policy)["expected_utility"]
    _, failed = _call(5, kto_step, policy, reference, *batch, z0, learning_rate)
    if failed is not None:
        return failed
    try:
        after, utility_after = loss_of(policy), evaluator(policy)["expected_utility"]
    except Exception as err:  # the student's step left the policy unusable
        return _wrong(5, f"after your step the policy fails: {type(err).__name__}: {err}")
    round_off = 64 * np.finfo(np.float64).eps
    if not np.isfinite(after) or after >= before - round_off * before:
        change = "did not change" if after == before else "rose"
        return _wrong(
            5,
            f"the batch's loss {change} ({before:.6f} -> {after:.6f}): step "
            "against the gradient, params[k] -= learning_rate * grads[k], and "
            "update policy.params in place",
        )
    if not utility_after > utility_before + round_off * abs(utility_before):
        return _wrong(
            5,
            "the loss fell but the exact utility did not rise: is the step the "
            "gradient of the mean KTO loss of THIS batch?",
        )
    minikto_step = reference.copy(frozen=False)
    grads = kto_objective(minikto_step, reference, *batch, z0=z0, beta=0.1).grads
    minikto_step.set_flat(
        minikto_step.get_flat() - learning_rate * minikto_step.flatten_grads(grads)
    )
    gap = float(np.max(np.abs(policy.get_flat() - minikto_step.get_flat())))
    return _correct(
        5,
        f"loss {before:.6f} -> {after:.6f}, exact utility "
        f"{utility_before:+.4f} -> {utility_after:+.4f}; your parameters differ from "
        f"minikto's gradient step (kto_objective) by at most {gap:.1e}",
    )


# ------------------------------------------------------------------------------------------
# 03 · Training a toy policy


def nb03_exercise_1(first_loss: Any, task: Any, data: Any, config: KTOConfig) -> Verdict:
    """The loss ``train(task, data, config)`` logs at step 1, derived from the first batch."""
    answer = _number(1, first_loss, "first_loss")
    if isinstance(answer, Verdict):
        return answer
    one_step = KTOConfig(
        **(config.to_dict() | {"max_steps": 1, "eval_every": 0, "progress": False})
    )
    with warnings.catch_warnings():  # the Eq. 8 warning was shown when the run was set up
        warnings.simplefilter("ignore", WeightBalanceWarning)
        logged = float(train(task, data, one_step).history[0]["loss"])
    if _close(answer, logged, PAPER_RTOL):
        return _correct(1)
    share = data.num_desirable / len(data)
    whole = (config.desirable_weight * share + config.undesirable_weight * (1 - share)) / 2
    if _close(answer, whole, PAPER_RTOL):
        return _wrong(
            1, "that uses the dataset's label shares; count the labels of the first batch only"
        )
    return _wrong(
        1,
        "each example loses lambda_y / 2 at step 1; average over the rows of the "
        "first batch (count them: batches are nearly equal, not always "
        "config.batch_size)",
    )


def nb03_exercise_2(matched_mean: Any, policy: Any, reference: Any, data: Any) -> Verdict:
    """The mean log-ratio of the matched pairs (x_i, y_i) of ``data`` under ``policy``."""
    answer = _number(2, matched_mean, "matched_mean")
    if isinstance(answer, Verdict):
        return answer
    own = policy.sequence_logps(data.prompts, data.responses)
    own_ref = reference.sequence_logps(data.prompts, data.responses)
    right = float(np.mean(np.asarray(own - own_ref)))
    length = int(data.responses.shape[1])
    if abs(answer - right) <= _rounding_bound(own, own_ref, length):
        return _correct(2)
    shifted = data.responses[mismatched_indices(len(data))]
    other = policy.sequence_logps(data.prompts, shifted)
    other_ref = reference.sequence_logps(data.prompts, shifted)
    mismatched = float(np.mean(np.asarray(other - other_ref)))
    if abs(answer - mismatched) <= _rounding_bound(other, other_ref, length):
        return _wrong(
            2, "those are the mismatched pairs (x_i, y_{i-1}); use each example's own response"
        )
    if abs(answer + right) <= _rounding_bound(own, own_ref, length):
        return _wrong(2, "the log-ratio is log pi(y|x) - log pi_ref(y|x), policy first")
    return _wrong(
        2,
        "the mean over all examples of log pi(y_i|x_i) - log pi_ref(y_i|x_i), "
        "with result.policy and reference",
    )


# ------------------------------------------------------------------------------------------
# 04 · Variations


def nb04_exercise_1(threshold_log_odds: Any) -> Verdict:
    """The reference log-odds below which DPO prefers the minority (share 0.7, beta 0.5)."""
    from .experiments.minority import dpo_optimum_log_odds

    answer = _number(1, threshold_log_odds, "threshold_log_odds")
    if isinstance(answer, Verdict):
        return answer
    share, beta = 0.7, 0.5
    right = _root(lambda odds: float(dpo_optimum_log_odds(share, odds, beta)), -100.0, 100.0)
    if _close(answer, right, PAPER_RTOL):
        return _correct(1)
    if _close(answer, -right, PAPER_RTOL):
        return _wrong(1, "the sign: the reference must be against the majority's y_a")
    if _close(answer, right * beta, PAPER_RTOL):
        return _wrong(1, "DPO's optimum divides log(share / (1 - share)) by beta")
    return _wrong(1, "set DPO's optimum log-odds to zero and solve for the reference's")


def nb04_exercise_2(contradiction_gradient: Any) -> Verdict:
    """d(mean KTO loss)/d log pi of one response, once desirable and once undesirable."""
    answer = _number(2, contradiction_gradient, "contradiction_gradient")
    if isinstance(answer, Verdict):
        return answer
    out = kto_loss(
        np.zeros(2),
        np.zeros(2),
        np.array([True, False]),
        0.0,
        beta=0.1,
        desirable_weight=2.0,
        undesirable_weight=1.0,
    )
    right = float(np.sum(out.grad_policy_logps))
    if _close(answer, right, PAPER_RTOL):
        return _correct(2)
    if answer == 0:
        return _wrong(2, "the two terms cancel only when lambda_D = lambda_U")
    if _close(answer, 2 * right, PAPER_RTOL):
        return _wrong(2, "the batch loss is the MEAN of the two examples' losses")
    if _close(answer, -right, PAPER_RTOL):
        return _wrong(2, "the sign: a desirable example's loss falls as its log-prob rises")
    return _wrong(
        2,
        "at r = z0 = 0 each example's weight is sigmoid(0) sigmoid(0) = 1/4; add "
        "the two examples' gradients and divide by the batch size",
    )


# ------------------------------------------------------------------------------------------
# 05 · Backends and scaling


def nb05_exercise_1(onehot_parameters: Callable, dense_parameters: Callable) -> Verdict:
    """Formulas for the trainable parameters of a one-hot and of a dense policy."""
    counts, failed = _call(1, lambda: (onehot_parameters(12, 5), dense_parameters(12, 8)))
    if failed is not None:
        return failed
    if any(c is None for c in counts):
        return _unsolved(1, "both functions should return a number")
    for v, p, d in ((12, 5, 8), (30, 7, 16), (100, 3, 4)):
        if onehot_parameters(v, p) != SoftmaxPolicy(v, p).num_parameters:
            return _wrong(
                1,
                "onehot: count the prompt table, the previous-token table (with "
                "its begin-state row) and the bias",
            )
        if dense_parameters(v, d) != SoftmaxPolicy(v, p, features=d).num_parameters:
            return _wrong(
                1,
                "dense: the output layer and the bias are trained; the random embeddings are fixed",
            )
    n = int(onehot_parameters(50257, 5))
    return _correct(
        1,
        f"at V = 50257: onehot {n:,} parameters ({8 * n / 2**30:.1f} GiB in "
        f"float64), dense d=768 {int(dense_parameters(50257, 768)):,}",
    )


def nb05_exercise_2(predicted_std_16: Any, mismatched: Any, *, draws: int = 4000) -> Verdict:
    """The standard deviation of the mean of 16 distinct log-ratios drawn from ``mismatched``.

    Compared with ``draws`` random batches: the spread of their means is known to about
    ``1 / sqrt(2 draws)`` (1.1% for 4000), so an answer within 10% passes and the known
    mistakes (the spread of one log-ratio, 4 times larger; divided by B, 4 times smaller) fail.
    """
    answer = _number(2, predicted_std_16, "predicted_std_16")
    if isinstance(answer, Verdict):
        return answer
    values = np.asarray(mismatched, dtype=np.float64)
    draw = np.random.default_rng(2)
    means = [values[draw.choice(values.size, 16, replace=False)].mean() for _ in range(draws)]
    measured = float(np.std(means))
    if abs(answer / measured - 1.0) < 0.1:
        return _correct(2)
    if abs(answer / (4 * measured) - 1.0) < 0.1:
        return _wrong(2, "that is the spread of one log-ratio; a mean of B of them varies less")
    return _wrong(
        2, "the variance of a mean of B independent draws is the variance of one divided by B"
    )


# ------------------------------------------------------------------------------------------
# 06 · The loss family


def _pair_gradient(loss_type: str, margin: float, *, beta: float, **kwargs: Any) -> float:
    """d L / d log pi(y_w|x) of one pair whose log-ratio margin is ``margin`` (r_l = 0)."""
    out = preference_loss(
        loss_type, np.array([margin]), np.zeros(1), np.zeros(1), np.zeros(1), beta=beta, **kwargs
    )
    return float(out.grad_policy_chosen_logps[0])


def nb06_exercise_1(ipo_target_margin: Any) -> Verdict:
    """The margin Delta = r_w - r_l at which a pair's IPO loss is smallest (beta 0.25)."""
    answer = _number(1, ipo_target_margin, "ipo_target_margin")
    if isinstance(answer, Verdict):
        return answer
    beta = 0.25
    # the loss is a square of the margin: its gradient rises through 0 at the minimum
    right = _root(lambda m: _pair_gradient("ipo", m, beta=beta), -100.0, 100.0)
    if _close(answer, right, PAPER_RTOL):
        return _correct(1)
    if _close(answer, beta * right, PAPER_RTOL):
        return _wrong(1, "that is beta Delta; IPO's square is on the margin Delta itself")
    if _close(answer, -right, PAPER_RTOL):
        return _wrong(1, "the sign: IPO pulls the chosen response ABOVE the rejected one")
    if _close(answer, 2 * right, PAPER_RTOL):
        return _wrong(1, "check the constant of the target in the table: it carries a 1/2")
    return _wrong(1, "set the derivative of IPO's per-pair loss with respect to Delta to zero")


def nb06_exercise_2(cdpo_turning_margin: Any) -> Verdict:
    """The beta Delta at which cDPO's loss is smallest (label smoothing q = 0.2, beta 1)."""
    answer = _number(2, cdpo_turning_margin, "cdpo_turning_margin")
    if isinstance(answer, Verdict):
        return answer
    beta, smoothing = 1.0, 0.2

    def slope(m: float) -> float:  # rises from -(1 - q) to q: one zero
        return _pair_gradient("sigmoid", m, beta=beta, label_smoothing=smoothing)

    right = beta * _root(slope, -100.0, 100.0)
    if _close(answer, right, PAPER_RTOL):
        return _correct(2)
    if _close(answer, -right, PAPER_RTOL):
        return _wrong(2, "the sign: with q < 1/2 the label still prefers the chosen response")
    if _close(answer, float(np.exp(right)), PAPER_RTOL):
        return _wrong(2, "that is e^(beta Delta); the margin is its logarithm")
    if abs(answer) <= PAPER_RTOL:
        return _wrong(2, "at beta Delta = 0 cDPO's v still rises: v'(0) = (1 - 2q) / 2 > 0")
    return _wrong(
        2, "set v'(h) = (1 - q) sigma(-h) - q sigma(h) to zero (h = beta Delta) and solve for h"
    )


def nb06_exercise_3(hinge_kink_gradient: Any) -> Verdict:
    """d L / d log pi(y_w|x) that minikto returns for one pair on the hinge's kink (beta 0.5).

    The gradient is 0 or of size beta on either side of the kink, so an answer passes within
    ``PAPER_RTOL * beta`` of minikto's (3 digits of the slope's scale).
    """
    answer = _number(3, hinge_kink_gradient, "hinge_kink_gradient")
    if isinstance(answer, Verdict):
        return answer
    beta = 0.5
    kink = 1.0 / beta  # beta Delta = 1
    right = _pair_gradient("hinge", kink, beta=beta)
    if _close(answer, right, PAPER_RTOL, floor=beta):
        return _correct(3)
    below = _pair_gradient("hinge", kink * (1 - 1e-6), beta=beta)
    if _close(answer, below, PAPER_RTOL, floor=beta):
        return _wrong(
            3,
            "that is the slope just below the kink (beta Delta < 1); at the kink itself "
            "minikto takes the derivative torch.relu's backward uses at 0",
        )
    if _close(answer, below / beta, PAPER_RTOL, floor=beta):
        return _wrong(3, "that is a derivative with respect to beta Delta, and not at the kink")
    return _wrong(
        3, "read the convention in the docstring of minikto.pairwise's hinge, then apply it"
    )
