r"""The known mistakes in KTO implementations, each a small variant of minikto's own loss.

:func:`minikto.check_kto` compares a user's outputs with the correct loss and, when they
differ, with every variant here: a variant whose outputs match the user's names the mistake.
Each variant is a NumPy function of a :class:`~minikto.tools.check_cases.Case` returning
``(loss, losses, rewards)``; ``None`` for an output it does not determine; each names the
mistake and its one-line fix. Gradients of the variants are central finite differences of
their loss (:func:`fd_grad`, with the error bound of :mod:`minikto.gradcheck`); the correct
loss uses minikto's hand gradients (:func:`minikto.kto_loss`, :func:`minikto.kl_estimate`).
:data:`RESULT_MISTAKES` are the mistakes seen in what a function returns (or does) rather
than in its numbers.

Notation as in :mod:`minikto.kto`: ``r_i = policy_logps_i - reference_logps_i``,
``s_i = +1`` (desirable) or ``-1`` (undesirable), ``z_i = s_i beta (r_i - z0)``, the loss
of an example ``lambda_i sigmoid(-z_i)``, the batch loss their mean over all B examples.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..gradcheck import RoundingNoise, difference_quotient
from ..kto import kl_estimate, kto_loss
from .check_cases import Case, SequenceCase

__all__ = [
    "LOSS_VARIANTS",
    "RESULT_MISTAKES",
    "SEQUENCE_VARIANTS",
    "Outputs",
    "SequenceVariant",
    "Variant",
    "correct_outputs",
    "correct_sequence",
    "fd_grad",
    "fd_step",
    "variant_outputs",
]

Values = tuple[float, "np.ndarray | None", "np.ndarray | None"]


@dataclass
class Outputs:
    """What a loss gives on one case (None: not returned, or not determined)."""

    loss: float
    losses: np.ndarray | None = None  #: (B,)
    rewards: np.ndarray | None = None  #: (B,)
    grad: np.ndarray | None = None  #: (B,), dLoss / d policy_logps
    grad_kl: np.ndarray | None = None  #: (B,), dLoss / d kl_policy_logps (estimated mode)
    autograd: bool = False  #: True when the gradients came from the framework's autograd
    grad_bound: np.ndarray | None = None  #: (B,), the error finite differences may have
    grad_kl_bound: np.ndarray | None = None  #: (B,), the same for grad_kl


@dataclass(frozen=True)
class Variant:
    """One known mistake: its name, the sentence that explains it, and its loss."""

    name: str
    modes: tuple[str, ...]  #: the z0 modes where it can occur ("given", "estimated")
    sentence: str  #: the mistake, and where it is done right
    value: Callable[[Case, bool], Values]  #: (case, estimated) -> (loss, losses, rewards)
    fix: str = ""  #: the one-line fix
    detached: bool = True  #: False: the gradient flows into z0 through kl_policy_logps
    #: z0 is computed from policy_logps: its gradient is also matched with z0 detached
    z0_from_policy: bool = False


# ------------------------------------------------------------------------------------------
# The correct loss, and the pieces the variants change


def _z0(case: Case, estimated: bool) -> float:
    if not estimated:
        return case.z0
    return float(kl_estimate(case.kl_policy_logps, case.kl_reference_logps).z0)


def _kto(case: Case, z0: float) -> Values:
    out = kto_loss(
        case.policy_logps, case.reference_logps, case.desirable, z0, beta=case.beta,
        desirable_weight=case.desirable_weight, undesirable_weight=case.undesirable_weight,
    )
    return float(out.loss), out.losses, out.rewards


def _weights(case: Case) -> np.ndarray:
    return np.where(case.desirable, case.desirable_weight, case.undesirable_weight)


def _logits(case: Case, z0: float, *, flip: bool = True) -> np.ndarray:
    """``z_i = s_i beta (r_i - z0)``; ``flip=False`` keeps ``s_i = +1`` for every example."""
    sign = np.where(case.desirable, 1.0, -1.0) if flip else 1.0
    return sign * case.beta * (case.policy_logps - case.reference_logps - z0)


def _per_kind_means(case: Case, losses: np.ndarray) -> list[float]:
    return [float(losses[m].mean()) for m in (case.desirable, ~case.desirable) if m.any()]


def correct_outputs(case: Case, estimated: bool) -> Outputs:
    """The correct loss with minikto's hand gradients (z0 detached: no gradient into kl)."""
    out = kto_loss(
        case.policy_logps, case.reference_logps, case.desirable, _z0(case, estimated),
        beta=case.beta, desirable_weight=case.desirable_weight,
        undesirable_weight=case.undesirable_weight,
    )
    return Outputs(
        float(out.loss), out.losses, out.rewards, out.grad_policy_logps,
        np.zeros(case.batch) if estimated else None,
    )


def fd_grad(
    loss: Callable[[Case], float],
    case: Case,
    field: str,
    h: float = 1e-6,
    expected: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Central finite differences of ``loss`` with respect to one array of the case, and the
    error each can have (:func:`minikto.gradcheck.difference_quotient`; ``expected``, the
    gradient it is compared with, decides where the truncation and noise are measured)."""
    x = getattr(case, field)

    def value(v: np.ndarray) -> float:
        return loss(case.replace(**{field: v}))

    reference = np.zeros_like(x) if expected is None else np.asarray(expected, dtype=float)
    condition = abs(value(x)) + float(np.sum(np.abs(x * reference)))
    noise = RoundingNoise(value, x, h, 0)
    grad, bound = np.empty_like(x), np.empty_like(x)
    for i, direction in enumerate(np.eye(x.shape[0])):
        grad[i], bound[i] = difference_quotient(
            value, x, direction, h, condition=condition,
            expected=None if expected is None else float(reference[i]), noise=noise,
        )
    return grad, bound


def fd_step(case: Case) -> float:
    """The finite-difference step: 1e-6, smaller when beta is large (a sharper sigmoid)."""
    return 1e-6 / max(1.0, case.beta)


def variant_outputs(variant: Variant, case: Case, estimated: bool,
                    yours: Outputs | None = None) -> Outputs:
    """A variant's values on a case, and its gradients by finite differences (their error
    bounds measured against ``yours`` gradients when given)."""
    loss, losses, rewards = variant.value(case, estimated)
    out = Outputs(loss, losses, rewards)
    if not np.isfinite(loss):
        return out

    def value(c: Case) -> float:
        return variant.value(c, estimated)[0]

    mine = yours if yours is not None else Outputs(loss)
    out.grad, out.grad_bound = fd_grad(value, case, "policy_logps", fd_step(case), mine.grad)
    if estimated and variant.detached:
        out.grad_kl = np.zeros(case.batch)
    elif estimated and abs(float(np.mean(case.kl_policy_logps - case.kl_reference_logps))) > 1e-4:
        out.grad_kl, out.grad_kl_bound = fd_grad(value, case, "kl_policy_logps", fd_step(case),
                                                 mine.grad_kl)
    # (left None at the clamp's kink, where one-sided slopes differ)
    return out


def detached_outputs(variant: Variant, case: Case, estimated: bool) -> Outputs:
    """A variant whose z0 comes from policy_logps, with that z0 detached: minikto's hand
    gradient at the variant's z0 (what an autograd port that detaches it computes)."""
    loss, losses, rewards = variant.value(case, estimated)
    z0 = max(0.0, float(np.mean(case.policy_logps - case.reference_logps)))
    return Outputs(loss, losses, rewards, correct_outputs(case.replace(z0=z0), False).grad,
                   np.zeros(case.batch) if estimated else None)


# ------------------------------------------------------------------------------------------
# The catalogue


def _clamp_before_mean(case: Case, estimated: bool) -> Values:
    ratios = case.kl_policy_logps - case.kl_reference_logps
    return _kto(case, float(np.mean(np.maximum(ratios, 0.0))))


def _self_paired(case: Case, estimated: bool) -> Values:
    return _kto(case, max(0.0, float(np.mean(case.policy_logps - case.reference_logps))))


def _reversed_pairs(case: Case, estimated: bool) -> Values:
    # Reversing an odd batch pairs the middle prompt m with its own response. The KL inputs
    # hold y_{m} at position m + 1 (x_{m+1} gets y_m); that term becomes the matched one.
    ratios = case.kl_policy_logps - case.kl_reference_logps
    if case.batch % 2:
        m = (case.batch - 1) // 2
        ratios = ratios.copy()
        ratios[(m + 1) % case.batch] = case.policy_logps[m] - case.reference_logps[m]
    return _kto(case, max(0.0, float(np.mean(ratios))))


def _separate_sum(case: Case, estimated: bool) -> Values:
    losses = _kto(case, _z0(case, estimated))[1]
    return sum(_per_kind_means(case, losses)), None, None


def _separate_average(case: Case, estimated: bool) -> Values:
    losses = _kto(case, _z0(case, estimated))[1]
    return float(np.mean(_per_kind_means(case, losses))), None, None


def _weights_after_mean(case: Case, estimated: bool) -> Values:
    unweighted = np.exp(-np.logaddexp(0.0, _logits(case, _z0(case, estimated))))
    return float(np.mean(unweighted) * np.mean(_weights(case))), None, None


def _beta_missing(case: Case, estimated: bool) -> Values:
    loss, losses, rewards = _kto(case, _z0(case, estimated))
    return loss, losses, rewards / case.beta


def _sign_flipped(case: Case, estimated: bool) -> Values:
    z = _logits(case, _z0(case, estimated), flip=False)
    losses = _weights(case) * np.exp(-np.logaddexp(0.0, z))  # lambda sigmoid(-z)
    return float(np.mean(losses)), losses, None


def _dpo_style(case: Case, estimated: bool) -> Values:
    losses = _weights(case) * np.logaddexp(0.0, -_logits(case, _z0(case, estimated)))
    return float(np.mean(losses)), losses, None


def _nan_one_label(case: Case, estimated: bool) -> Values:
    if case.desirable.all() or not case.desirable.any():
        return float("nan"), None, None
    return _kto(case, _z0(case, estimated))


def _beta_outside(case: Case, estimated: bool) -> Values:
    unscaled = _logits(case, _z0(case, estimated)) / case.beta  # s_i (r_i - z0)
    losses = _weights(case) * (1.0 - case.beta * np.exp(-np.logaddexp(0.0, -unscaled)))
    return float(np.mean(losses)), losses, None


def _reweighted(case: Case, estimated: bool, weights: np.ndarray) -> Values:
    z = _logits(case, _z0(case, estimated))
    losses = weights * np.exp(-np.logaddexp(0.0, z))
    return float(np.mean(losses)), losses, None


def _z0_clamped(case: Case, estimated: bool) -> Values:
    return _kto(case, max(0.0, case.z0))


_BOTH = ("given", "estimated")
_EST = ("estimated",)
_GIVEN = ("given",)
_ONE_MEAN = ("KTO's batch loss is ONE mean over all B weighted examples (paper §4.1; TRL "
             "takes the mean of the concatenated losses).")

#: The catalogue of known mistakes, in the order they are reported.
LOSS_VARIANTS: tuple[Variant, ...] = (
    Variant("clamp_before_mean", _EST,
            "the KL clamp is applied to each mismatched log-ratio before the mean; z0 is "
            "max(0, mean) of the batch's mismatched log-ratios, clamped AFTER the mean "
            "(paper §4.1; TRL's KTOTrainer clamps the batch mean at 0).", _clamp_before_mean,
            "z0 = max(0, mean(kl_policy_logps - kl_reference_logps))"),
    Variant("z0_not_detached", _EST,
            "the gradient flows into z0 through kl_policy_logps; the paper (§4.1) treats z0 "
            "as a constant and TRL computes the KL term without gradient (minikto's "
            "z0='batch-grad' is this variant, for study).",
            lambda case, est: _kto(case, _z0(case, est)),
            "z0 = z0.detach() (PyTorch) or jax.lax.stop_gradient(z0) (JAX)", detached=False),
    Variant("kl_self_paired", _EST,
            "z0 is estimated from the matched pairs (each prompt with its own response); "
            "the estimate pairs x_i with another example's response y_{(i-1) mod B}, as "
            "TRL rotates completions by one (paper §4.1).", _self_paired,
            "z0 = max(0, mean(kl_policy_logps - kl_reference_logps)), not of policy_logps",
            z0_from_policy=True),
    Variant("kl_reversed_pairs", _EST,
            "the mismatched pairs are built by reversing the batch, which pairs the middle "
            "prompt of an odd batch with its own response; rotate by one instead "
            "(x_i with y_{(i-1) mod B}, TRL's fix for odd batch sizes).", _reversed_pairs,
            "kl responses = responses rolled by one (y_{(i-1) mod B}), not reversed"),
    Variant("z0_clamped", _GIVEN,
            "the given z0 is clamped at 0 inside the loss; the clamp belongs to the estimate "
            "(kl_estimate), and a loss given z0 uses it as it is, negative or not (paper §4.1).",
            _z0_clamped, "use z0 as given: drop the max(0, z0) / clamp(min=0) in the loss"),
    Variant("separate_means_sum", _BOTH,
            "the desirable and undesirable losses are averaged separately and the two means "
            "added; " + _ONE_MEAN, _separate_sum, "loss = losses.mean() over all B examples"),
    Variant("separate_means_average", _BOTH,
            "the desirable and undesirable losses are averaged separately and the two means "
            "averaged; " + _ONE_MEAN, _separate_average,
            "loss = losses.mean() over all B examples"),
    Variant("weights_after_mean", _BOTH,
            "the weights multiply the batch mean instead of each example's loss; "
            "lambda_D or lambda_U weighs every example before the mean (paper §4.1 and "
            "Eq. 8; TRL weighs the per-example losses).", _weights_after_mean,
            "losses = where(desirable, desirable_weight, undesirable_weight) * unweighted"),
    Variant("weights_swapped", _BOTH,
            "desirable examples are weighted by undesirable_weight and undesirable ones by "
            "desirable_weight; lambda_D goes with desirable examples (paper §4.1, Eq. 8).",
            lambda case, est: _reweighted(case, est, np.where(
                case.desirable, case.undesirable_weight, case.desirable_weight)),
            "weight = where(desirable, desirable_weight, undesirable_weight)"),
    Variant("desirable_weight_everywhere", _BOTH,
            "every example is weighted by desirable_weight; undesirable examples take "
            "undesirable_weight (lambda_U, paper §4.1, Eq. 8).",
            lambda case, est: _reweighted(case, est, np.full(
                case.batch, case.desirable_weight)),
            "weight = where(desirable, desirable_weight, undesirable_weight)"),
    Variant("beta_missing_from_rewards", _BOTH,
            "the logged rewards lack beta; TRL logs rewards = beta * (policy_logps - "
            "reference_logps), the implied reward of paper §4.1.", _beta_missing,
            "rewards = beta * (policy_logps - reference_logps)"),
    Variant("beta_outside_sigmoid", _BOTH,
            "beta multiplies the sigmoid instead of its argument; the value is "
            "sigmoid(beta (r - z0)) (paper §4.1, the KTO loss).", _beta_outside,
            "1 - sigmoid(beta * (r - z0)), not 1 - beta * sigmoid(r - z0)"),
    Variant("undesirable_sign_flipped", _BOTH,
            "the undesirable term uses sigmoid(beta (r - z0)) like the desirable one; an "
            "undesirable example's value is sigmoid(beta (z0 - r)) (paper §4.1, the KTO "
            "loss).", _sign_flipped,
            "undesirable: 1 - sigmoid(beta * (z0 - r)), the sign flipped"),
    Variant("dpo_style_log_sigmoid", _BOTH,
            "the loss is -log sigmoid (DPO's form) instead of lambda (1 - sigmoid); KTO's "
            "loss is lambda_y - v(x, y) with the sigmoid value itself (paper §4.1).",
            _dpo_style, "losses = weight * (1 - sigmoid(z)), not -weight * logsigmoid(z)"),
    Variant("nan_one_label", _BOTH,
            "the loss is NaN (or an error) when a batch holds one label; KTO's mean runs "
            "over all B examples, so a batch of one kind has a finite loss (TRL's nanmean of "
            "the concatenated losses).", _nan_one_label,
            "one mean over the concatenated losses, never a mean of an empty subset"),
)

#: Mistakes seen in what the function returns or does, not in its numbers: name -> sentence
#: with the one-line fix.
RESULT_MISTAKES: dict[str, str] = {
    "returns_none": "fn returns None (a missing return statement?). Fix: end fn with "
                    "`return loss` (or a tuple / dict whose first element or 'loss' is it).",
    "complex_loss": "fn returns a complex number (a power or log of a negative number, e.g. "
                    "x ** 0.5 or np.emath). Fix: use real operations only, e.g. the sigmoid as "
                    "1 / (1 + exp(-z)) or exp(-logaddexp(0, -z)).",
    "nan_loss": "fn returns NaN on every case (0 / 0, log of a negative, inf - inf). Fix: "
                "compute 1 - sigmoid(z) as sigmoid(-z) = exp(-logaddexp(0, z)), and average "
                "over all B examples.",
    "sys_exit": "fn calls sys.exit() or exit(), which would end the training program. Fix: "
                "return the loss; raise an exception for a bad input.",
}


# ------------------------------------------------------------------------------------------
# The sequence level: token log-probs (N, T) and a mask -> sequence log-probs (N,)


@dataclass(frozen=True)
class SequenceVariant:
    """One known mistake in summing token log-probs into a sequence log-prob."""

    name: str
    sentence: str
    value: Callable[[SequenceCase], np.ndarray]
    fix: str = ""  #: the one-line fix


def correct_sequence(case: SequenceCase) -> np.ndarray:
    """``log pi(y|x)``: the SUM of the response tokens' log-probs (padding excluded)."""
    return np.sum(np.where(case.mask, case.token_logps, 0.0), axis=1)


def _drop(mask: np.ndarray, last: bool) -> np.ndarray:
    lengths = mask.sum(axis=1)
    out = mask.copy()
    rows = np.flatnonzero(lengths > 0)
    out[rows, lengths[rows] - 1 if last else 0] = False
    return out


def _dropped(case: SequenceCase, last: bool) -> np.ndarray:
    return correct_sequence(SequenceCase("", "", case.token_logps, _drop(case.mask, last)))


SEQUENCE_VARIANTS: tuple[SequenceVariant, ...] = (
    SequenceVariant("token_logps_averaged",
                    "token log-probs are averaged; log pi(y|x) is the SUM of the response "
                    "tokens' log-probs, the log of the product of their probabilities (TRL's "
                    "KTOTrainer sums them).",
                    lambda c: correct_sequence(c) / c.mask.sum(axis=1),
                    "(token_logps * mask).sum(-1), without the division by mask.sum(-1)"),
    SequenceVariant("last_token_dropped",
                    "the last response token (often the end token) is dropped; log pi(y|x) "
                    "sums every response token, the end token included (TRL keeps it in the "
                    "completion's mask).",
                    lambda c: _dropped(c, last=True),
                    "keep the end token in the completion mask"),
    SequenceVariant("first_token_dropped",
                    "the first response token is dropped (a shift by one too many); "
                    "log pi(y|x) sums every response token (TRL shifts the labels by one, "
                    "once).",
                    lambda c: _dropped(c, last=False),
                    "shift the labels by one once: logits[:, :-1] score tokens[:, 1:]"),
    SequenceVariant("padding_counted",
                    "padding positions are summed in; log pi(y|x) sums the response tokens "
                    "only (TRL zeroes the padded positions with the completion mask).",
                    lambda c: np.sum(c.token_logps, axis=1),
                    "(token_logps * mask).sum(-1)"),
)
