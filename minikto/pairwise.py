r"""The pairwise preference losses of TRL 0.19's ``DPOConfig.loss_type``, each with its gradient.

One public function, :func:`preference_loss`, computes any of the thirteen losses a
``DPOTrainer`` offers on a batch of B preference pairs and returns the same fields as
:func:`~minikto.losses.dpo_loss`. Each loss is a short private function below whose docstring
derives its value and its gradient; the code beside it is one line per formula.

Notation. For pair i, the implied rewards (log-ratios) of the chosen and rejected responses are

.. math:: c_i = \log\pi(y_w|x) - \log\pi_{ref}(y_w|x), \qquad
          r_i = \log\pi(y_l|x) - \log\pi_{ref}(y_l|x),

``m_i = c_i - r_i`` is their margin and ``h_i = beta * m_i`` the scaled margin (DPO's logit).
``sigma`` is the logistic sigmoid; ``sigma'(h) = sigma(h) sigma(-h)``. Every loss is the plain
MEAN of its B per-pair (or, for ``aot*``, per-rank) terms ``l_i``, so the gradient of the batch
loss is ``(1/B) dl_i/dc_i`` and ``(1/B) dl_i/dr_i``; ``dc_i / d log pi(y_w|x)_i = 1``.

Which losses take which knob (as TRL): ``label_smoothing`` acts in ``sigmoid``, ``robust``,
``exo_pair``, ``aot`` and ``aot_pair`` (any other loss refuses a non-zero value rather than
ignore it); ``delta`` only in ``bco_pair``; ``discopop_tau`` only in ``discopop``.

Papers (as TRL's documentation names them): sigmoid = DPO (Rafailov et al. 2023) and, with
label smoothing, cDPO; hinge = SLiC (Zhao et al. 2023); ipo = IPO (Azar et al. 2023, Eq. 17);
exo_pair = EXO (Ji et al. 2024, Eq. 16); nca_pair = NCA (Chen et al. 2024); robust = rDPO
(Chowdhury et al. 2024); bco_pair = BCO (Jung et al. 2024); sppo_hard = SPPO (Wu et al. 2024,
Eq. 4.7 with hard probabilities); aot, aot_pair = AOT (Melnyk et al. 2024); discopop = DiscoPOP
(Lu et al. 2024, Eq. 5); apo_zero, apo_down = APO (D'Oosterlinck et al. 2024, Eqs. 7, 8).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

from . import _checks
from ._brief import brief
from .backend import log_sigmoid

__all__ = ["PAIRWISE_LOSS_TYPES", "PreferenceLoss", "preference_loss"]

#: The ``loss_type`` values of TRL 0.19's ``DPOConfig``, in TRL's order.
PAIRWISE_LOSS_TYPES = (
    "sigmoid",
    "hinge",
    "ipo",
    "exo_pair",
    "nca_pair",
    "robust",
    "bco_pair",
    "sppo_hard",
    "aot",
    "aot_pair",
    "discopop",
    "apo_zero",
    "apo_down",
)

#: The losses in which ``label_smoothing`` acts.
SMOOTHED = ("sigmoid", "robust", "exo_pair", "aot", "aot_pair")

#: What TRL's ``exo_pair`` uses when it is given ``label_smoothing = 0``.
EXO_DEFAULT_SMOOTHING = 1e-3


class PreferenceLoss(NamedTuple):
    """What :func:`preference_loss` returns (the fields of :class:`~minikto.losses.DPOLoss`)."""

    loss: Any  #: 0-d, the mean of ``losses``
    losses: Any  #: (B,), per-pair terms (per-RANK terms for ``aot`` and ``aot_pair``)
    grad_policy_chosen_logps: Any  #: (B,), dLoss / d policy_chosen_logps
    grad_policy_rejected_logps: Any  #: (B,), dLoss / d policy_rejected_logps
    chosen_rewards: Any  #: (B,), beta * (policy_chosen_logps - reference_chosen_logps)
    rejected_rewards: Any  #: (B,), beta * (policy_rejected_logps - reference_rejected_logps)


def preference_loss(
    loss_type: str,
    policy_chosen_logps: Any,
    policy_rejected_logps: Any,
    reference_chosen_logps: Any,
    reference_rejected_logps: Any,
    *,
    beta: float = 0.1,
    label_smoothing: float = 0.0,
    delta: float | None = None,
    discopop_tau: float = 0.05,
) -> PreferenceLoss:
    r"""Any pairwise loss of TRL 0.19's ``DPOTrainer``, with its gradient.

    Parameters
    ----------
    loss_type : str
        One of :data:`PAIRWISE_LOSS_TYPES`.
    policy_chosen_logps, policy_rejected_logps : array, shape (B,)
        ``log pi(y_w|x)`` and ``log pi(y_l|x)`` (sums of token log-probs; TRL feeds ``ipo``
        the per-token MEAN instead, which the caller computes).
    reference_chosen_logps, reference_rejected_logps : array, shape (B,)
        The same under the frozen reference policy (no gradient is returned for them).
    beta : float, > 0
        TRL's ``beta`` (for ``ipo`` and ``sppo_hard`` the regulariser tau, through 1/(2 beta)).
    label_smoothing : float
        epsilon, the assumed probability that a pair's labels are flipped: in [0, 1] for
        ``sigmoid``, ``aot``, ``aot_pair``; in [0, 1/2) for ``robust``; in [0, 1) for
        ``exo_pair`` (0 means 1e-3 there, as in TRL). Must be 0 for the other losses.
    delta : float, optional
        ``bco_pair`` only: the reward shift, TRL's running mean of the (detached) rewards. None
        means this batch's mean reward ``mean(concat(chosen_rewards, rejected_rewards))``, which
        is what TRL's running mean equals at its first step. Refused for any other loss.
    discopop_tau : float, > 0
        ``discopop`` only: the temperature of its mixing weight (TRL default 0.05).

    Returns
    -------
    PreferenceLoss
        ``loss`` (0-d mean), ``losses`` (B,), the two (B,) gradients, the two (B,) rewards.

    Notes
    -----
    The per-loss formulas and their derivations are in the docstrings of the private functions
    ``_sigmoid``, ``_hinge``, ... of this module (one per loss type). This function checks the
    inputs once, forms the log-ratios, calls the loss, and applies the mean's ``1/B``.
    """
    xp, batch = _checks.paired_batch(
        policy_chosen_logps=policy_chosen_logps,
        policy_rejected_logps=policy_rejected_logps,
        reference_chosen_logps=reference_chosen_logps,
        reference_rejected_logps=reference_rejected_logps,
    )
    dtype = policy_chosen_logps.dtype
    beta = _checks.loss_weights(beta, 1.0, 1.0, dtype)[0]
    options = _options(loss_type, label_smoothing, delta, discopop_tau)
    chosen = policy_chosen_logps - reference_chosen_logps
    rejected = policy_rejected_logps - reference_rejected_logps
    _checks.bounded_product(beta, chosen - rejected, xp, "beta")
    _checks.bounded_product(beta, xp.concat([chosen, rejected]), xp, "beta")

    if loss_type == "aot":  # sorts the policy's margins and the reference's margins
        policy_margin = policy_chosen_logps - policy_rejected_logps
        reference_margin = reference_chosen_logps - reference_rejected_logps
        losses, d_margin, _ = _aot(xp, policy_margin, reference_margin, beta, **options)
        d_chosen, d_rejected = d_margin, -d_margin  # d margin / d chosen = 1, / d rejected = -1
    elif loss_type == "aot_pair":  # sorts the chosen log-ratios and the rejected log-ratios
        losses, d_chosen, d_rejected = _aot(xp, chosen, rejected, beta, **options)
    else:
        if loss_type == "bco_pair" and options["delta"] is None:
            options["delta"] = float(xp.mean(beta * xp.concat([chosen, rejected])))
        losses, d_chosen, d_rejected = _LOSSES[loss_type](xp, chosen, rejected, beta, **options)

    return PreferenceLoss(
        loss=xp.mean(losses),
        losses=losses,
        grad_policy_chosen_logps=d_chosen / batch,
        grad_policy_rejected_logps=d_rejected / batch,
        chosen_rewards=beta * chosen,
        rejected_rewards=beta * rejected,
    )


def _options(loss_type: Any, label_smoothing: Any, delta: Any, discopop_tau: Any) -> dict:
    """The knobs ``loss_type`` takes, checked; a knob set for a loss that ignores it is refused."""
    if loss_type not in PAIRWISE_LOSS_TYPES:
        raise ValueError(
            f"loss_type: expected one of {PAIRWISE_LOSS_TYPES}; got {brief(loss_type)}"
        )
    eps = _checks.scalar(label_smoothing, "label_smoothing", nonnegative=True)
    ceiling = {"robust": (0.5, "[0, 0.5)"), "exo_pair": (1.0, "[0, 1)")}.get(loss_type)
    if loss_type not in SMOOTHED and eps != 0.0:
        raise ValueError(
            f"label_smoothing: expected 0 for loss_type {brief(loss_type)}, which has no label "
            f"smoothing (it acts in {SMOOTHED}); got {eps}"
        )
    if ceiling is not None and eps >= ceiling[0]:
        raise ValueError(
            f"label_smoothing: expected a value in {ceiling[1]} for loss_type {brief(loss_type)}; "
            f"got {eps}"
        )
    if eps > 1.0:
        raise ValueError(f"label_smoothing: expected a probability in [0, 1]; got {eps}")
    if delta is not None:
        if loss_type != "bco_pair":
            raise ValueError(
                f"delta: expected None for loss_type {loss_type!r} (only 'bco_pair' shifts its "
                f"rewards by delta); got {brief(delta)}"
            )
        delta = _checks.scalar(delta, "delta")
    tau = _checks.scalar(discopop_tau, "discopop_tau", positive=True)
    if loss_type == "exo_pair" and eps == 0.0:
        eps = EXO_DEFAULT_SMOOTHING
    if loss_type in SMOOTHED:
        return {"label_smoothing": eps}
    if loss_type == "bco_pair":
        return {"delta": delta}
    if loss_type == "discopop":
        return {"tau": tau}
    return {}


def _sig(xp: Any, h: Any) -> Any:
    """``sigma(h)`` as ``exp(log sigma(h))``: never overflows."""
    return xp.exp(log_sigmoid(h))


def _sig_prime(xp: Any, h: Any) -> Any:
    """``sigma'(h) = sigma(h) sigma(-h)`` as ``exp(log sigma(h) + log sigma(-h))``."""
    return xp.exp(log_sigmoid(h) + log_sigmoid(-h))


# ------------------------------------------------------------------------------------------
# Losses of the scaled margin h = beta (c - r)


def _sigmoid(xp: Any, c: Any, r: Any, beta: float, label_smoothing: float) -> tuple:
    r"""DPO (``sigmoid``), label-smoothed as cDPO.

    .. math:: \ell = -(1-\epsilon)\log\sigma(h) - \epsilon\log\sigma(-h), \quad h = \beta(c - r).

    With :math:`\frac{d}{dh}\log\sigma(\pm h) = \pm\sigma(\mp h)`,

    .. math:: \frac{d\ell}{dh} = -(1-\epsilon)\sigma(-h) + \epsilon\,\sigma(h), \qquad
              \frac{\partial\ell}{\partial c} = \beta\frac{d\ell}{dh}
              = -\frac{\partial\ell}{\partial r}.

    At :math:`\epsilon = 0` this is :func:`~minikto.losses.dpo_loss`; the minimum moves from
    :math:`h = +\infty` to :math:`h = \log((1-\epsilon)/\epsilon)`.
    """
    eps = label_smoothing
    h = beta * (c - r)
    losses = -(1.0 - eps) * log_sigmoid(h) - eps * log_sigmoid(-h)
    d_h = -(1.0 - eps) * _sig(xp, -h) + eps * _sig(xp, h)
    return losses, beta * d_h, -beta * d_h


def _robust(xp: Any, c: Any, r: Any, beta: float, label_smoothing: float) -> tuple:
    r"""Robust DPO (``robust``): an unbiased loss under labels flipped with probability eps.

    .. math:: \ell = \frac{-(1-\epsilon)\log\sigma(h) + \epsilon\log\sigma(-h)}{1 - 2\epsilon},
              \qquad
              \frac{d\ell}{dh} = \frac{-(1-\epsilon)\sigma(-h) - \epsilon\,\sigma(h)}{1-2\epsilon}.

    Unlike cDPO the second term enters with a PLUS sign. As :math:`h \to +\infty` the loss
    decreases like :math:`-\epsilon h/(1-2\epsilon)`: for :math:`\epsilon > 0` it has no
    minimum and keeps pushing the margin up with slope at least
    :math:`\epsilon/(1-2\epsilon)`. Its expectation under labels flipped with probability
    :math:`\epsilon` is the clean DPO loss (Chowdhury et al. 2024, §3).
    """
    eps = label_smoothing
    h = beta * (c - r)
    losses = (-(1.0 - eps) * log_sigmoid(h) + eps * log_sigmoid(-h)) / (1.0 - 2.0 * eps)
    d_h = (-(1.0 - eps) * _sig(xp, -h) - eps * _sig(xp, h)) / (1.0 - 2.0 * eps)
    return losses, beta * d_h, -beta * d_h


def _exo_pair(xp: Any, c: Any, r: Any, beta: float, label_smoothing: float) -> tuple:
    r"""EXO (``exo_pair``): the reverse KL from the model's pair preference to the labels'.

    With :math:`p = (\sigma(h), \sigma(-h))` the model's probability that the chosen/rejected
    response wins and :math:`q = (1-\epsilon, \epsilon)` the smoothed label,

    .. math:: \ell = \mathrm{KL}(p\,\|\,q)
              = \sigma(h)[\log\sigma(h) - \log(1-\epsilon)]
              + \sigma(-h)[\log\sigma(-h) - \log\epsilon].

    Derivative: :math:`\frac{d}{dh}\{\sigma(h)[\log\sigma(h) - a]\}
    = \sigma'(h)[\log\sigma(h) - a] + \sigma(h)\sigma(-h) = \sigma'(h)[\log\sigma(h) - a + 1]`
    and the mirror term gives :math:`-\sigma'(h)[\log\sigma(-h) - b + 1]`. Their sum, with
    :math:`\log\sigma(h) - \log\sigma(-h) = h`, is

    .. math:: \frac{d\ell}{dh} = \sigma(h)\sigma(-h)\,
              \Bigl(h - \log\frac{1-\epsilon}{\epsilon}\Bigr),

    zero at the label's log-odds :math:`h^* = \log((1-\epsilon)/\epsilon)` (6.9 for TRL's
    default :math:`\epsilon = 10^{-3}`), where :math:`\ell = 0`.
    """
    eps = label_smoothing
    h = beta * (c - r)
    log_pos, log_neg = log_sigmoid(h), log_sigmoid(-h)
    losses = xp.exp(log_pos) * (log_pos - math.log(1.0 - eps)) + xp.exp(log_neg) * (
        log_neg - math.log(eps)
    )
    d_h = _sig_prime(xp, h) * (h - math.log((1.0 - eps) / eps))
    return losses, beta * d_h, -beta * d_h


def _hinge(xp: Any, c: Any, r: Any, beta: float) -> tuple:
    r"""SLiC (``hinge``): a hinge on the scaled margin.

    .. math:: \ell = \max(0, 1 - h), \qquad
              \frac{d\ell}{dh} = -1 \;(h < 1), \quad 0 \;(h \ge 1).

    At the kink :math:`h = 1` the loss has no derivative; minikto takes 0 there (the
    right-hand derivative, a valid subgradient in :math:`[-1, 0]`), which is what
    ``torch.relu``'s backward gives at 0 and so what TRL's ``relu(1 - h)`` trains with.
    """
    h = beta * (c - r)
    active = h < 1.0
    losses = xp.where(active, 1.0 - h, xp.zeros_like(h))
    d_h = xp.where(active, -xp.ones_like(h), xp.zeros_like(h))
    return losses, beta * d_h, -beta * d_h


def _ipo(xp: Any, c: Any, r: Any, beta: float) -> tuple:
    r"""IPO (``ipo``, Azar et al. Eq. 17): a square regressing the UNSCALED margin on 1/(2 beta).

    .. math:: \ell = \Bigl(m - \frac{1}{2\beta}\Bigr)^2, \quad m = c - r, \qquad
              \frac{\partial\ell}{\partial c} = 2\Bigl(m - \frac{1}{2\beta}\Bigr)
              = -\frac{\partial\ell}{\partial r}.

    beta plays IPO's tau: the target margin is :math:`1/(2\tau)`; the minimum is
    :math:`\ell = 0` there, and the loss also pushes a too-large margin DOWN.
    """
    target = 1.0 / (2.0 * beta)
    gap = (c - r) - target
    _finite_square(xp, gap, "beta")
    return gap**2, 2.0 * gap, -2.0 * gap


def _discopop(xp: Any, c: Any, r: Any, beta: float, tau: float) -> tuple:
    r"""DiscoPOP (``discopop``, Eq. 5): a blend of the logistic and exponential losses.

    With the mixing weight :math:`s = \sigma(h/\tau)`,

    .. math:: \ell = -\log\sigma(h)\,(1 - s) + e^{-h}\,s .

    With :math:`s' = \sigma(h/\tau)\sigma(-h/\tau)/\tau`, the product rule on each term gives

    .. math:: \frac{d\ell}{dh} = -\sigma(-h)(1-s) + s'\log\sigma(h) + e^{-h}(s' - s).

    :math:`e^{-h}` alone overflows for :math:`h < -709` (float64) while :math:`s` underflows to
    0 (TRL then gets ``inf * 0 = nan``); the products are computed as
    :math:`e^{-h}s = \exp(-h + \log\sigma(h/\tau))` and
    :math:`e^{-h}s' = \exp(-h + \log\sigma(h/\tau) + \log\sigma(-h/\tau))/\tau`, finite for
    :math:`\tau < 1`. For :math:`\tau > 1` the loss really grows like
    :math:`e^{-h(1 - 1/\tau)}`, and a batch where it would overflow is refused.
    """
    h = beta * (c - r)
    _checks.bounded_product(1.0 / tau, h, xp, "discopop_tau")
    log_s, log_not_s = log_sigmoid(h / tau), log_sigmoid(-h / tau)
    _finite_exp(xp, -h + log_s, "discopop_tau")
    s = xp.exp(log_s)
    exp_s = xp.exp(-h + log_s)  # e^{-h} s
    exp_s_prime = xp.exp(-h + log_s + log_not_s) / tau  # e^{-h} s'
    s_prime = xp.exp(log_s + log_not_s) / tau
    losses = -log_sigmoid(h) * (1.0 - s) + exp_s
    d_h = -_sig(xp, -h) * (1.0 - s) + s_prime * log_sigmoid(h) + exp_s_prime - exp_s
    return losses, beta * d_h, -beta * d_h


# ------------------------------------------------------------------------------------------
# Losses of the two rewards u_c = beta c and u_r = beta r separately


def _nca_pair(xp: Any, c: Any, r: Any, beta: float) -> tuple:
    r"""NCA (``nca_pair``): each response's reward against an absolute zero, not its partner.

    .. math:: \ell = -\log\sigma(u_c) - \tfrac12\log\sigma(-u_c) - \tfrac12\log\sigma(-u_r),
              \quad u = \beta\cdot\text{log-ratio},

    .. math:: \frac{\partial\ell}{\partial c}
              = \beta\bigl(-\sigma(-u_c) + \tfrac12\sigma(u_c)\bigr), \qquad
              \frac{\partial\ell}{\partial r} = \tfrac12\beta\,\sigma(u_r).

    The chosen term is minimised at :math:`u_c = \log 2`; the rejected term is pushed down
    without limit, more weakly as :math:`u_r \to -\infty`.
    """
    u_c, u_r = beta * c, beta * r
    losses = -log_sigmoid(u_c) - 0.5 * log_sigmoid(-u_c) - 0.5 * log_sigmoid(-u_r)
    d_c = beta * (-_sig(xp, -u_c) + 0.5 * _sig(xp, u_c))
    d_r = 0.5 * beta * _sig(xp, u_r)
    return losses, d_c, d_r


def _bco_pair(xp: Any, c: Any, r: Any, beta: float, delta: float) -> tuple:
    r"""BCO on pairs (``bco_pair``): a logistic classifier of chosen vs rejected by reward.

    .. math:: \ell = -\log\sigma(u_c - \delta) - \log\sigma(-(u_r - \delta)),
              \quad u = \beta\cdot\text{log-ratio},

    with :math:`\delta` the detached running mean of the rewards (a constant here), so

    .. math:: \frac{\partial\ell}{\partial c} = -\beta\,\sigma(-(u_c - \delta)), \qquad
              \frac{\partial\ell}{\partial r} = \beta\,\sigma(u_r - \delta).
    """
    u_c, u_r = beta * c, beta * r
    losses = -log_sigmoid(u_c - delta) - log_sigmoid(-(u_r - delta))
    return losses, -beta * _sig(xp, -(u_c - delta)), beta * _sig(xp, u_r - delta)


def _sppo_hard(xp: Any, c: Any, r: Any, beta: float) -> tuple:
    r"""SPPO with hard win probabilities (``sppo_hard``): two squares on the log-ratios.

    .. math:: \ell = \Bigl(c - \frac{1}{2\beta}\Bigr)^2 + \Bigl(r + \frac{1}{2\beta}\Bigr)^2,
              \qquad \frac{\partial\ell}{\partial c} = 2\Bigl(c - \frac{1}{2\beta}\Bigr), \quad
              \frac{\partial\ell}{\partial r} = 2\Bigl(r + \frac{1}{2\beta}\Bigr).

    The chosen log-ratio is regressed on :math:`+1/(2\beta)`, the rejected on
    :math:`-1/(2\beta)` (SPPO's Eq. 4.7 with P = 1 for the winner and 0 for the loser).
    """
    target = 1.0 / (2.0 * beta)
    gap_c, gap_r = c - target, r + target
    _finite_square(xp, xp.concat([gap_c, gap_r]), "beta")
    return gap_c**2 + gap_r**2, 2.0 * gap_c, 2.0 * gap_r


def _apo_zero(xp: Any, c: Any, r: Any, beta: float) -> tuple:
    r"""APO-zero (``apo_zero``, Eq. 7): chosen above the reference, rejected below it.

    .. math:: \ell = 1 - \sigma(u_c) + \sigma(u_r) = \sigma(-u_c) + \sigma(u_r),

    .. math:: \frac{\partial\ell}{\partial c} = -\beta\,\sigma'(u_c), \qquad
              \frac{\partial\ell}{\partial r} = +\beta\,\sigma'(u_r).

    It is KTO with :math:`z_0 = 0` applied to the chosen (desirable) and rejected
    (undesirable) response of each pair, summed per pair.
    """
    u_c, u_r = beta * c, beta * r
    losses = _sig(xp, -u_c) + _sig(xp, u_r)
    return losses, -beta * _sig_prime(xp, u_c), beta * _sig_prime(xp, u_r)


def _apo_down(xp: Any, c: Any, r: Any, beta: float) -> tuple:
    r"""APO-down (``apo_down``, Eq. 8): both responses down, the rejected one more.

    .. math:: \ell = \sigma(u_c) + 1 - \sigma(h) = \sigma(u_c) + \sigma(-h),
              \quad h = u_c - u_r = \beta(c - r),

    .. math:: \frac{\partial\ell}{\partial c} = \beta\bigl(\sigma'(u_c) - \sigma'(h)\bigr),
              \qquad \frac{\partial\ell}{\partial r} = \beta\,\sigma'(h).
    """
    u_c, h = beta * c, beta * (c - r)
    losses = _sig(xp, u_c) + _sig(xp, -h)
    d_margin = _sig_prime(xp, h)
    return losses, beta * (_sig_prime(xp, u_c) - d_margin), beta * d_margin


# ------------------------------------------------------------------------------------------
# AOT: the sigmoid loss on SORTED quantities (a one-dimensional optimal-transport matching)


def _aot(xp: Any, first: Any, second: Any, beta: float, label_smoothing: float) -> tuple:
    r"""AOT (``aot`` and ``aot_pair``): the cDPO loss between two sorted vectors.

    ``aot_pair`` sorts the chosen log-ratios :math:`c` and the rejected log-ratios :math:`r`
    across the batch; ``aot`` sorts the policy's margins
    :math:`\log\pi(y_w|x) - \log\pi(y_l|x)` and the reference's. With :math:`a = sort(first)`,
    :math:`b = sort(second)` and :math:`d_k = a_k - b_k` (rank k, not pair k),

    .. math:: \ell_k = -(1-\epsilon)\log\sigma(\beta d_k) - \epsilon\log\sigma(-\beta d_k).

    Gradient: a sort is a permutation, :math:`a_k = first_{\pi(k)}`, so the derivative with
    respect to :math:`first_{\pi(k)}` is :math:`d\ell_k/dd_k = \beta g_k` with
    :math:`g_k = -(1-\epsilon)\sigma(-\beta d_k) + \epsilon\sigma(\beta d_k)`, and with respect
    to :math:`second_{\rho(k)}` it is :math:`-\beta g_k`. In code: ``grad_first[i] =
    beta * g[rank_of(i)]``, the rank being the inverse permutation ``argsort(argsort(first))``.
    For ``aot`` the chain rule to the policy gives ``+grad`` to the chosen and ``-grad`` to the
    rejected log-probs; the reference's ranks carry no gradient.

    Ties. Where two entries of ``first`` are equal the sort is continuous but not
    differentiable. minikto sorts STABLY (ties keep their batch order), so of two tied entries
    the earlier one gets the rank below: its gradient is the derivative as it moves DOWN (its
    left derivative), the later one's is the derivative as it moves UP (its right derivative);
    their sum is the exact derivative of moving both together. TRL uses ``torch.sort``, which
    is not stable by default, so at a tie the two may assign the gradients the other way.
    """
    eps = label_smoothing
    order_first = xp.argsort(first, stable=True)
    order_second = xp.argsort(second, stable=True)
    d = xp.take(first, order_first) - xp.take(second, order_second)
    _checks.bounded_product(beta, d, xp, "beta")
    h = beta * d
    losses = -(1.0 - eps) * log_sigmoid(h) - eps * log_sigmoid(-h)
    g = -(1.0 - eps) * _sig(xp, -h) + eps * _sig(xp, h)  # d l_k / d h_k, per rank k
    grad_first = beta * xp.take(g, xp.argsort(order_first, stable=True))
    grad_second = -beta * xp.take(g, xp.argsort(order_second, stable=True))
    return losses, grad_first, grad_second


def _finite_square(xp: Any, gap: Any, knob: str) -> None:
    """Refuse a gap whose square would overflow its dtype (naming the knob that sets it)."""
    _checks.bounded_product(float(xp.max(xp.abs(gap))), gap, xp, knob)


def _finite_exp(xp: Any, exponent: Any, knob: str) -> None:
    """Refuse an exponent whose exp would overflow its dtype (naming the knob that sets it)."""
    largest = float(xp.max(exponent))
    limit = math.log(float(xp.finfo(exponent.dtype).max))
    if largest > limit:
        raise ValueError(
            f"{knob}: expected a value for which exp(-h) sigma(h / {knob}) stays finite; got a "
            f"batch where its exponent reaches {largest:.3g} > {limit:.3g} (use a smaller "
            f"{knob} or beta)"
        )


_LOSSES = {
    "sigmoid": _sigmoid,
    "hinge": _hinge,
    "ipo": _ipo,
    "exo_pair": _exo_pair,
    "nca_pair": _nca_pair,
    "robust": _robust,
    "bco_pair": _bco_pair,
    "sppo_hard": _sppo_hard,
    "discopop": _discopop,
    "apo_zero": _apo_zero,
    "apo_down": _apo_down,
}
