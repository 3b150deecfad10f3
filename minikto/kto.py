r"""The KTO loss, its reference point estimate, and their hand-derived gradients.

Notation (paper: Ethayarajh et al. 2024, "KTO: Model Alignment as Prospect Theoretic
Optimization", the KTO loss of §4.1, the weight band of Eq. 8 and Proposition 4.1):

- implied reward (log-ratio) of example i: ``r_i = log pi(y_i|x_i) - log pi_ref(y_i|x_i)``;
- reference point ``z0``: a (detached) estimate of ``KL(pi || pi_ref)``;
- ``z_i = beta * (r_i - z0)`` for a desirable example, ``z_i = beta * (z0 - r_i)`` for an
  undesirable one;
- loss of example i: ``lambda_i * (1 - sigmoid(z_i)) = lambda_i * sigmoid(-z_i)`` with
  ``lambda_i = desirable_weight`` or ``undesirable_weight``;
- batch loss: the plain mean over all B examples (one denominator for both kinds).
"""

from __future__ import annotations

from typing import Any, NamedTuple

from . import _checks
from .backend import array_namespace, log_sigmoid

__all__ = [
    "KLEstimate",
    "KTOLoss",
    "checked_kl_estimate",
    "checked_kto_loss",
    "kl_estimate",
    "kto_loss",
    "mismatched_indices",
]


class KTOLoss(NamedTuple):
    """What :func:`kto_loss` returns (all arrays of the input's namespace and dtype)."""

    loss: Any  #: 0-d, the mean of ``losses`` over the batch
    losses: Any  #: (B,), weighted per-example losses, each in [0, its weight]
    grad_policy_logps: Any  #: (B,), dLoss / d policy_logps
    grad_z0: Any  #: 0-d, dLoss / dz0 (used only when the gradient flows through z0)
    rewards: Any  #: (B,), beta * (policy_logps - reference_logps), as TRL logs them


class KLEstimate(NamedTuple):
    """What :func:`kl_estimate` returns."""

    z0: Any  #: 0-d, max(0, mean of the mismatched log-ratios)
    grad_kl_policy_logps: Any  #: (B,), dz0 / d kl_policy_logps (zero where clamped)


def kto_loss(
    policy_logps: Any,
    reference_logps: Any,
    desirable: Any,
    z0: Any,
    *,
    beta: float = 0.1,
    desirable_weight: float = 1.0,
    undesirable_weight: float = 1.0,
) -> KTOLoss:
    r"""KTO loss of a batch of unpaired examples, with its gradient (paper §4.1, Prop. 4.1).

    Parameters
    ----------
    policy_logps : array, shape (B,)
        ``log pi(y_i | x_i)``: the SUM of the response tokens' log-probabilities.
    reference_logps : array, shape (B,)
        ``log pi_ref(y_i | x_i)`` under the frozen reference policy.
    desirable : bool array, shape (B,)
        True for a thumbs-up example, False for a thumbs-down one. The batch may hold only
        one kind.
    z0 : float or 0-d array
        The reference point (see :func:`kl_estimate`); treated as a constant here, its
        gradient is returned separately as ``grad_z0``.
    beta : float, > 0
        Sharpness of the value function (TRL and HALOs default 0.1).
    desirable_weight, undesirable_weight : float, >= 0
        ``lambda_D`` and ``lambda_U`` (paper Eq. 8 advises
        ``lambda_D n_D / (lambda_U n_U)`` in ``[1, 4/3]``).

    Returns
    -------
    KTOLoss
        ``loss`` (0-d mean), ``losses`` (B,), ``grad_policy_logps`` (B,), ``grad_z0`` (0-d),
        ``rewards`` (B,) ``= beta * (policy_logps - reference_logps)``.

    Notes
    -----
    Value (the KTO loss of §4.1). With :math:`r_i` the log-ratio and :math:`s_i = +1` for a
    desirable and :math:`-1` for an undesirable example, let
    :math:`z_i = s_i \beta (r_i - z_0)`. Then

    .. math:: \ell_i = \lambda_i (1 - \sigma(z_i)) = \lambda_i \sigma(-z_i),
              \qquad L = \frac{1}{B} \sum_i \ell_i .

    :math:`\sigma(-z)` is evaluated as :math:`\exp(\log\sigma(-z))` with the stable
    log-sigmoid, so no exponential overflows.

    Gradient (Prop. 4.1). Since :math:`\sigma'(z) = \sigma(z)\sigma(-z)`,

    .. math:: \frac{\partial L}{\partial r_i}
              = -\frac{1}{B} \lambda_i s_i \beta \, \sigma(z_i) \sigma(-z_i), \qquad
              \frac{\partial L}{\partial z_0} = -\sum_i \frac{\partial L}{\partial r_i},

    and ``d r_i / d policy_logps_i = 1``. The weight :math:`\sigma(z)\sigma(-z) \le 1/4`
    vanishes as :math:`|z|` grows: examples far past the reference point in either
    direction stop contributing. It is computed as
    :math:`\exp(\log\sigma(z) + \log\sigma(-z))`, finite for any logit.
    """
    xp, _ = _checks.unpaired_batch(policy_logps, reference_logps, desirable, z0)
    dtype = policy_logps.dtype
    beta, w_d, w_u = _checks.loss_weights(beta, desirable_weight, undesirable_weight, dtype)
    z0 = _checks.zero_point(z0, xp, dtype)
    logratios = _difference(policy_logps, reference_logps, ("policy_logps", "reference_logps"))
    _difference(logratios, z0, ("policy_logps - reference_logps", "z0"))
    return checked_kto_loss(policy_logps, reference_logps, desirable, z0, beta, w_d, w_u)


def checked_kto_loss(
    policy_logps: Any,
    reference_logps: Any,
    desirable: Any,
    z0: Any,
    beta: float,
    desirable_weight: float,
    undesirable_weight: float,
) -> KTOLoss:
    """:func:`kto_loss` of checked arguments (``z0`` a 0-d array of the log-probs' dtype):
    the formulas of its Notes, line by line.

    The training step calls it on the log-probs of data checked once, when they were loaded;
    only the size of ``beta`` times the log-ratios at hand is checked here.
    """
    xp = array_namespace(policy_logps)
    dtype, batch = policy_logps.dtype, policy_logps.shape[0]
    sign = xp.where(desirable, xp.asarray(1.0, dtype=dtype), xp.asarray(-1.0, dtype=dtype))
    weight = xp.where(
        desirable,
        xp.asarray(desirable_weight, dtype=dtype),
        xp.asarray(undesirable_weight, dtype=dtype),
    )
    logratios = policy_logps - reference_logps
    _checks.bounded_product(beta, logratios - z0, xp, "beta")
    z = sign * beta * (logratios - z0)

    # forward: l_i = lambda_i * sigmoid(-z_i)
    log_sig_pos = log_sigmoid(z)
    log_sig_neg = log_sigmoid(-z)
    losses = weight * xp.exp(log_sig_neg)
    loss = xp.mean(losses)

    # backward: dL/dr_i = -(1/B) lambda_i s_i beta sigmoid(z_i) sigmoid(-z_i)
    grad_logratios = -(weight * sign * beta / batch) * xp.exp(log_sig_pos + log_sig_neg)
    grad_z0 = -xp.sum(grad_logratios)

    return KTOLoss(
        loss=loss,
        losses=losses,
        grad_policy_logps=grad_logratios,
        grad_z0=grad_z0,
        rewards=beta * logratios,
    )


def kl_estimate(kl_policy_logps: Any, kl_reference_logps: Any) -> KLEstimate:
    r"""The batch estimate of the reference point from mismatched pairs, and its gradient.

    Parameters
    ----------
    kl_policy_logps : array, shape (B,)
        ``log pi(y'_j | x'_j)`` on mismatched pairs (see :func:`mismatched_indices`).
    kl_reference_logps : array, shape (B,)
        ``log pi_ref(y'_j | x'_j)`` on the same pairs.

    Returns
    -------
    KLEstimate
        ``z0`` (0-d) and ``grad_kl_policy_logps`` (B,).

    Notes
    -----
    As TRL and HALOs compute it, labels ignored and clamped AFTER the mean:

    .. math:: z_0 = \max\Bigl(0, \frac{1}{B} \sum_j
              [\log\pi(y'_j|x'_j) - \log\pi_{ref}(y'_j|x'_j)]\Bigr)

    Gradient: :math:`\partial z_0 / \partial \log\pi(y'_j|x'_j) = 1/B` where the mean is
    >= 0 and 0 where it is clamped: at exactly 0 the gradient passes, as
    ``where(m >= 0, m, 0)`` gives it (``torch.clamp(min=0)`` and ``relu`` give 0 there,
    ``maximum`` gives 1/(2B); docs/VECTORS.md tabulates them). The paper detaches z0; this
    gradient is used only by the ``"batch-grad"`` mode.
    """
    logps = {"kl_policy_logps": kl_policy_logps, "kl_reference_logps": kl_reference_logps}
    batch = _checks.float_vectors("kl_policy_logps", logps, array_namespace(**logps))
    names = ("kl_policy_logps", "kl_reference_logps")
    _difference(kl_policy_logps, kl_reference_logps, names, shares=batch)  # a finite mean
    return checked_kl_estimate(kl_policy_logps, kl_reference_logps)


def checked_kl_estimate(kl_policy_logps: Any, kl_reference_logps: Any) -> KLEstimate:
    """:func:`kl_estimate` of checked arguments: the formulas of its Notes, line by line."""
    xp = array_namespace(kl_policy_logps)
    batch = kl_policy_logps.shape[0]
    mean = xp.mean(kl_policy_logps - kl_reference_logps)
    zero = xp.zeros_like(mean)
    z0 = xp.maximum(mean, zero)
    passes = xp.astype(mean >= zero, kl_policy_logps.dtype)
    grad = xp.ones_like(kl_policy_logps) * (passes / batch)
    return KLEstimate(z0=z0, grad_kl_policy_logps=grad)


def _difference(first: Any, second: Any, names: tuple[str, str], *, shares: int = 1) -> Any:
    """``first - second``, refused (naming both) where it would overflow the dtype: the
    halves' difference, which cannot overflow, must stay below ``max / (2 * shares)`` (with
    ``shares = B``, a mean of B such differences cannot overflow either)."""
    xp = array_namespace(first)
    limit = xp.finfo(first.dtype).max / (2 * shares)
    half = xp.abs(first / 2 - second / 2)
    if bool(xp.any(half > limit)):
        i = int(xp.argmax(xp.reshape(half, (-1,))))
        a = first if first.ndim == 0 else first[i]
        b = second if getattr(second, "ndim", 0) == 0 else second[i]
        where = "" if half.ndim == 0 else f" at index {i}"
        raise ValueError(
            f"{names[0]}, {names[1]}: expected values whose difference fits in "
            f"{str(first.dtype).rsplit('.', 1)[-1]} (|difference| <= {2 * limit:.3g}); got "
            f"{float(a):.3g} and {float(b):.3g}{where}"
        )
    return first - second


def mismatched_indices(batch_size: int, xp: Any = None) -> Any:
    """Which response each prompt is paired with for the KL estimate: ``(i - 1) mod B``.

    Rotating by one inside the batch (as TRL does) pairs prompt ``x_i`` with the response of
    example ``i - 1``; no example is paired with its own response as long as ``B >= 2``.

    Parameters
    ----------
    batch_size : int, >= 2
    xp : namespace, optional (NumPy by default)

    Returns
    -------
    integer array, shape (B,)
    """
    batch_size = _checks.integer(batch_size, "batch_size")
    _checks.at_least_two_examples(
        batch_size,
        "batch_size",
        detail=" (the batch estimate of z0 pairs each prompt with ANOTHER example's response)",
    )
    xp = xp if xp is not None else array_namespace()
    return xp.roll(xp.arange(batch_size), 1)
