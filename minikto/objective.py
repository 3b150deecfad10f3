r"""The full KTO objective of a batch: policy -> log-probs -> reference point -> loss -> grads.

This composes the public pieces exactly as a learner would:

1. ``policy_logps = policy.sequence_logps(prompts, responses)`` (matched pairs);
2. the reference point ``z0``, one of five modes (:data:`Z0_MODES`):

   - ``"batch"``: :func:`~minikto.kto.kl_estimate` on mismatched pairs (prompt ``x_i`` with
     response ``y_{i-1}``), detached: the paper's default, as in TRL and HALOs;
   - ``"batch-grad"``: the same estimate with the gradient flowing through z0 (as an early
     version of the authors' code did);
   - ``"exact"``: the closed-form sequence KL (:func:`~minikto.exact.exact_kl`) averaged over
     the batch's prompts, detached;
   - ``"zero"``: z0 = 0 ("KTO-zero");
   - a number: a fixed z0;

3. :func:`~minikto.kto.kto_loss`;
4. the chain rule back to the parameters:

   .. math:: \frac{\partial L}{\partial\theta}
             = \sum_i \frac{\partial L}{\partial \log\pi(y_i|x_i)}
               \frac{\partial \log\pi(y_i|x_i)}{\partial\theta}
             \;+\; \underbrace{\frac{\partial L}{\partial z_0} \sum_j
               \frac{\partial z_0}{\partial \log\pi(y'_j|x'_j)}
               \frac{\partial \log\pi(y'_j|x'_j)}{\partial\theta}}_{\text{only "batch-grad"}}

"Detached" means the gradient is that of the loss with z0 held at its current value; the
batch estimate still costs one extra forward pass on the mismatched pairs, and no backward.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from . import _checks
from ._brief import brief
from .backend import array_namespace, to_numpy
from .exact import exact_kl
from .kto import KTOLoss, checked_kl_estimate, checked_kto_loss, mismatched_indices
from .policy import SoftmaxPolicy, TokenBatch

__all__ = [
    "Z0_MODES",
    "FlatObjective",
    "ObjectiveResult",
    "batch_objective",
    "check_max_length",
    "check_policy_pair",
    "kto_objective",
    "validate_z0_mode",
]

#: The named reference-point modes; a float is accepted too (a fixed z0).
Z0_MODES = ("batch", "batch-grad", "exact", "zero")


@dataclass
class ObjectiveResult:
    """What :func:`kto_objective` returns."""

    loss: Any  #: 0-d loss
    grads: dict[str, Any] | None  #: gradient per parameter (as policy.params); None: no backward
    z0: Any  #: 0-d reference point used
    kto: KTOLoss  #: per-example losses, rewards and gradients
    policy_logps: Any  #: (B,) matched-pair log-probs of the policy
    reference_logps: Any  #: (B,) matched-pair log-probs of the reference
    kl_logratio_mean: Any  #: 0-d mean mismatched log-ratio before the clamp (batch modes)


def validate_z0_mode(z0: Any) -> str | float:
    """Return ``z0`` if it is one of :data:`Z0_MODES` or a finite number; raise otherwise."""
    if isinstance(z0, str):
        if z0 not in Z0_MODES:
            raise ValueError(f"z0: expected one of {Z0_MODES} or a number; got {brief(z0)}")
        return z0
    return _checks.scalar(z0, "z0")


def kto_objective(
    policy: Any,
    reference: Any,
    prompts: Any,
    responses: Any,
    desirable: Any,
    *,
    z0: str | float = "batch",
    beta: float = 0.1,
    desirable_weight: float = 1.0,
    undesirable_weight: float = 1.0,
    reference_logps: Any = None,
    kl_reference_logps: Any = None,
    max_length: int | None = None,
    fixed_z0: Any = None,
    backward: bool = True,
) -> ObjectiveResult:
    """KTO loss of one batch and its gradient for every parameter of ``policy``.

    Parameters
    ----------
    policy : SoftmaxPolicy
        The policy being trained.
    reference : SoftmaxPolicy
        The frozen reference policy (same vocabulary and backend).
    prompts : int array, shape (B,)
    responses : int array, shape (B, T), padded with -1
    desirable : bool array, shape (B,)
    z0 : "batch", "batch-grad", "exact", "zero", or float
        The reference-point mode (see the module docstring).
    beta, desirable_weight, undesirable_weight : float
        As in :func:`~minikto.kto.kto_loss`.
    reference_logps : array (B,), optional
        Precomputed reference log-probs of the matched pairs (computed here if None).
    kl_reference_logps : array (B,), optional
        Precomputed reference log-probs of the mismatched pairs (batch modes).
    max_length : int, optional
        T, the most tokens a response may hold: a response with a token past T is refused
        (it lies outside the response space); also the T of ``"exact"`` (default:
        ``responses.shape[1]``).
    fixed_z0 : 0-d array or float, optional
        For the detached modes only: use this value instead of re-estimating z0. Finite
        differences of a detached objective hold z0 fixed (see :class:`FlatObjective`).
    backward : bool
        False: the loss only (``grads`` is None), without the backward pass and without
        keeping the forward pass's probabilities (what finite differences need).

    Returns
    -------
    ObjectiveResult

    Notes
    -----
    The arguments are checked once, in one call (the policy pair, the mode, the token batch
    into a :class:`~minikto.policy.TokenBatch`, ``max_length``, the labels, the given
    log-probs); then :func:`batch_objective` computes the objective (the training step calls
    it directly, with the data checked when they were loaded).
    """
    batch, checked = _checked_arguments(
        policy,
        reference,
        prompts,
        responses,
        desirable,
        z0=z0,
        max_length=max_length,
        reference_logps=reference_logps,
        kl_reference_logps=kl_reference_logps,
        fixed_z0=fixed_z0,
    )
    return batch_objective(
        policy,
        reference,
        batch,
        beta=beta,
        desirable_weight=desirable_weight,
        undesirable_weight=undesirable_weight,
        backward=backward,
        **checked,
    )


def batch_objective(
    policy: Any,
    reference: Any,
    batch: TokenBatch,
    desirable: Any,
    *,
    z0: str | float = "batch",
    beta: float = 0.1,
    desirable_weight: float = 1.0,
    undesirable_weight: float = 1.0,
    reference_logps: Any = None,
    kl_reference_logps: Any = None,
    max_length: int | None = None,
    fixed_z0: Any = None,
    backward: bool = True,
) -> ObjectiveResult:
    """:func:`kto_objective` of checked arguments (the math).

    ``policy`` and ``reference`` must be a pair :func:`check_policy_pair` accepts, ``batch``
    a :class:`~minikto.policy.TokenBatch` checked for them, ``desirable`` and the given
    log-probs arrays that :func:`kto_objective` accepts (the training step's data were
    checked when loaded); ``max_length`` is only the T of ``"exact"`` here. The policy's
    log-probs, which change with its parameters, are checked to be finite at every call.
    """
    xp = policy.xp
    beta, w_d, w_u = _checks.loss_weights(beta, desirable_weight, undesirable_weight, policy.dtype)
    if backward:
        policy_logps, cache = policy.batch_logps(batch, return_cache=True)
    else:
        policy_logps, cache = policy.batch_logps(batch), None
    _checks.finite(policy_logps, "policy_logps", xp)  # NaN parameters are never used silently
    if reference_logps is None:
        reference_logps = reference.batch_logps(batch)

    if fixed_z0 is not None and z0 != "batch-grad":
        point = ReferencePoint(xp.asarray(fixed_z0, dtype=policy.dtype))
    else:
        mode = z0 if isinstance(z0, str) else "number"
        point = REFERENCE_POINTS[mode](
            policy,
            reference,
            batch,
            z0=z0,
            backward=backward,
            max_length=max_length,
            kl_reference_logps=kl_reference_logps,
        )

    out = checked_kto_loss(policy_logps, reference_logps, desirable, point.z0, beta, w_d, w_u)
    grads = None
    if backward:
        grads = policy.batch_logps_backward(batch, out.grad_policy_logps, cache=cache)
    if point.z0_gradient is not None:  # "batch-grad": the chain rule through z0 as well
        kl_batch, kl_cache, dz0_dkl = point.z0_gradient
        kl_grads = policy.batch_logps_backward(kl_batch, out.grad_z0 * dz0_dkl, cache=kl_cache)
        grads = {k: grads[k] + kl_grads[k] for k in grads}
    return ObjectiveResult(
        loss=out.loss,
        grads=grads,
        z0=point.z0,
        kto=out,
        policy_logps=policy_logps,
        reference_logps=reference_logps,
        kl_logratio_mean=point.kl_logratio_mean,
    )


# ------------------------------------------------------------------------------------------
# The reference point z0, one function per mode


class ReferencePoint(NamedTuple):
    """What a z0 mode returns."""

    z0: Any  #: 0-d, the reference point
    kl_logratio_mean: Any = None  #: 0-d, the mismatched log-ratios' mean before the clamp
    #: ("batch-grad" only) the mismatched batch, its cache and dz0 / d kl_policy_logps
    z0_gradient: tuple | None = None


def _batch_estimate(
    policy: Any,
    reference: Any,
    batch: TokenBatch,
    *,
    z0: str,
    backward: bool,
    kl_reference_logps: Any,
    **_: Any,
) -> ReferencePoint:
    """``"batch"`` and ``"batch-grad"``: :func:`~minikto.kto.kl_estimate` on the mismatched
    pairs, prompt x_i with response y_{i-1}."""
    xp = policy.xp
    rows = xp.arange(batch.rows)
    kl_batch = batch.take(rows, responses_of=mismatched_indices(batch.rows, xp))
    with_grad = z0 == "batch-grad" and backward
    if with_grad:
        kl_policy_logps, kl_cache = policy.batch_logps(kl_batch, return_cache=True)
    else:
        kl_policy_logps, kl_cache = policy.batch_logps(kl_batch), None
    if kl_reference_logps is None:
        kl_reference_logps = reference.batch_logps(kl_batch)
    estimate = checked_kl_estimate(kl_policy_logps, kl_reference_logps)
    return ReferencePoint(
        z0=estimate.z0,
        kl_logratio_mean=xp.mean(kl_policy_logps - kl_reference_logps),
        z0_gradient=(kl_batch, kl_cache, estimate.grad_kl_policy_logps) if with_grad else None,
    )


def _exact(
    policy: Any, reference: Any, batch: TokenBatch, *, max_length: int | None, **_: Any
) -> ReferencePoint:
    """``"exact"``: the closed-form sequence KL, averaged over the batch's prompts."""
    xp = policy.xp
    prompts = xp.reshape(batch.prompts, batch.shape)[:, 0]
    length = batch.shape[1] if max_length is None else max_length
    return ReferencePoint(xp.mean(exact_kl(policy, reference, prompts, length)))


def _zero(policy: Any, reference: Any, batch: TokenBatch, **_: Any) -> ReferencePoint:
    """``"zero"``: z0 = 0 (KTO-zero)."""
    return ReferencePoint(policy.xp.asarray(0.0, dtype=policy.dtype))


def _number(
    policy: Any, reference: Any, batch: TokenBatch, *, z0: float, **_: Any
) -> ReferencePoint:
    """A number: a fixed z0."""
    return ReferencePoint(policy.xp.asarray(z0, dtype=policy.dtype))


#: The z0 modes of :data:`Z0_MODES` (and "number", a fixed z0): each a function of
#: (policy, reference, batch, **options) returning a :class:`ReferencePoint`.
REFERENCE_POINTS = {
    "batch": _batch_estimate,
    "batch-grad": _batch_estimate,
    "exact": _exact,
    "zero": _zero,
    "number": _number,
}


class FlatObjective:
    """The batch objective as a function of one flat float64 parameter vector.

    ``obj(theta) -> (loss, grad)`` is what ``scipy.optimize.minimize(obj, x0, jac=True)``
    takes; ``obj.value`` and ``obj.gradient`` are what ``scipy.optimize.check_grad`` takes.

    For the detached modes (``"batch"``, ``"exact"``) z0 is a constant by definition, so it
    is evaluated once, at the parameters the policy has when the objective is built, and
    held fixed (``freeze_z0=True``): then finite differences of ``value`` measure exactly
    what the detached gradient claims. With ``freeze_z0=False`` z0 is re-estimated at every
    call (as in training), and ``gradient`` is no longer the derivative of ``value``.

    Parameters
    ----------
    policy, reference : SoftmaxPolicy
        The policy is copied; the caller's policy is never modified.
    prompts, responses, desirable : arrays
        The batch (see :func:`kto_objective`).
    freeze_z0 : bool
    **loss_kwargs
        ``z0``, ``beta``, ``desirable_weight``, ``undesirable_weight``, ``max_length``.
    """

    def __init__(
        self,
        policy: Any,
        reference: Any,
        prompts: Any,
        responses: Any,
        desirable: Any,
        *,
        freeze_z0: bool = True,
        **loss_kwargs: Any,
    ) -> None:
        check_policy_pair(policy, reference)
        self.policy = policy.copy(frozen=False)
        self.reference = reference
        self.batch = (prompts, responses, desirable)
        self.loss_kwargs = loss_kwargs
        self.x0 = self.policy.get_flat()
        self.blocks = self.policy.param_slices()
        self.reference_logps = reference.sequence_logps(prompts, responses)
        self.fixed_z0 = None
        self._last: tuple[bytes, ObjectiveResult] | None = None
        mode = validate_z0_mode(loss_kwargs.get("z0", "batch"))
        if freeze_z0 and mode in ("batch", "exact"):
            # z0 is detached: the evaluation that estimates it at x0 is also the evaluation
            # with z0 held at that value, so it stays cached for the first call at x0
            self.fixed_z0 = self._evaluate(self.x0).z0

    def _evaluate(self, theta: np.ndarray, backward: bool = True) -> ObjectiveResult:
        """The objective at ``theta``; the last full evaluation is reused at the same ``theta``."""
        theta = np.asarray(theta, dtype=np.float64)
        key = theta.tobytes()
        last = self._last
        if last is not None and last[0] == key and (last[1].grads is not None or not backward):
            return last[1]
        self.policy.set_flat(theta)
        result = kto_objective(
            self.policy,
            self.reference,
            *self.batch,
            reference_logps=self.reference_logps,
            fixed_z0=self.fixed_z0,
            backward=backward,
            **self.loss_kwargs,
        )
        if backward:  # a value alone (a finite-difference probe) keeps the full evaluation
            self._last = (key, result)
        return result

    def value(self, theta: np.ndarray) -> float:
        """The loss at ``theta`` (a float); without a backward pass unless it is at hand."""
        return float(to_numpy(self._evaluate(theta, backward=False).loss))

    def gradient(self, theta: np.ndarray) -> np.ndarray:
        """The hand-derived gradient at ``theta``, a float64 vector like ``theta``."""
        return self.policy.flatten_grads(self._evaluate(theta).grads)

    def __call__(self, theta: np.ndarray) -> tuple[float, np.ndarray]:
        return self.value(theta), self.gradient(theta)


def check_policy_pair(policy: Any, reference: Any) -> None:
    """Refuse a policy and a reference whose log-probs cannot be compared response by response.

    Both must be :class:`~minikto.policy.SoftmaxPolicy` objects over the same vocabulary,
    prompts and end token (else a log-ratio compares different distributions), on the same
    backend and dtype.
    """
    for name, value in (("policy", policy), ("reference", reference)):
        if not isinstance(value, SoftmaxPolicy):
            raise TypeError(f"{name}: expected a SoftmaxPolicy; got {type(value).__name__}")
    _checks.same_response_space(reference, "reference", policy, "the policy's")
    if policy.xp is not reference.xp or policy.dtype != reference.dtype:
        raise TypeError(
            f"reference: expected the backend and dtype of policy ({policy.backend}, "
            f"{policy.dtype_name}); got ({reference.backend}, {reference.dtype_name})"
        )


def check_max_length(batch: Any, max_length: int, xp: Any) -> None:
    """Refuse a batch with a real token at a position >= max_length (padding may go on)."""
    rows, length = batch.shape
    if length > max_length:
        beyond = xp.reshape(batch.mask, (rows, length))[:, max_length:] > 0
        if bool(xp.any(beyond)):
            row = int(xp.argmax(xp.astype(xp.any(beyond, axis=1), xp.int8)))
            raise ValueError(
                f"responses: expected at most max_length = {max_length} tokens per response; "
                f"row {row} has a token at position {max_length} or later"
            )


def _checked_arguments(
    policy: Any,
    reference: Any,
    prompts: Any,
    responses: Any,
    desirable: Any,
    *,
    z0: Any,
    max_length: Any,
    reference_logps: Any,
    kl_reference_logps: Any,
    fixed_z0: Any,
) -> tuple[TokenBatch, dict[str, Any]]:
    """The checks of :func:`kto_objective`, once: the policy pair, the mode, the batch (and
    ``max_length``), the labels (lists and NumPy arrays moved to the policy's backend), the
    given log-probs (finite (B,) arrays of the policy's dtype) and ``fixed_z0`` (0-d)."""
    check_policy_pair(policy, reference)
    z0 = validate_z0_mode(z0)
    batch = policy.token_batch(prompts, responses)
    if max_length is not None:
        check_max_length(batch, _checks.positive_int(max_length, "max_length"), policy.xp)
    xp = policy.xp
    if isinstance(desirable, (list, tuple)) or (
        isinstance(desirable, np.ndarray) and not _checks.is_of(desirable, xp)
    ):
        desirable = xp.asarray(np.asarray(desirable))
    given = {"reference_logps": reference_logps, "kl_reference_logps": kl_reference_logps}
    array_namespace(policy.params["bias"], desirable=desirable, **given)  # one library
    _checks.bool_vector(desirable, "desirable", xp, length=batch.rows)
    for name, logps in given.items():
        if logps is not None:
            _checks.float_vector(logps, name, xp, length=batch.rows)
            _checks.same_dtype(logps, name, policy.dtype, "policy_logps")
    if fixed_z0 is not None:
        fixed_z0 = _checks.zero_point(fixed_z0, xp, policy.dtype)
    return batch, {
        "desirable": desirable,
        "z0": z0,
        "max_length": max_length,
        "fixed_z0": fixed_z0,
        **given,
    }
