"""minikto.check_kto on PyTorch implementations (skipped where torch cannot be imported).

``trl_style_kto`` is written from TRL's KTO semantics: the KL reference point from the
mismatched pairs, clamped at 0 AFTER the batch mean and detached; desirable and undesirable
losses computed on their own subsets, concatenated, weighted, and averaged over the batch.
``trl_signature_kto`` is the same computation with TRL 0.19's ``KTOTrainer.kto_loss``
signature and return value. Gradients come from torch autograd. Run with torch 2.14.1 (CPU):
``pip install ".[test]" torch`` (CI: the optional torch step).
"""

from __future__ import annotations

import pytest

import minikto

torch = pytest.importorskip("torch")


def trl_style_kto(mistake: str | None = None):
    """A PyTorch KTO loss (estimated z0) written the way TRL computes it."""

    def kto(policy_logps, reference_logps, desirable, kl_policy_logps, kl_reference_logps, *,
            beta, desirable_weight, undesirable_weight):
        kl_ratios = kl_policy_logps - kl_reference_logps
        if mistake == "clamp_before_mean":
            kl = kl_ratios.clamp(min=0).mean()
        else:
            kl = kl_ratios.mean().clamp(min=0)
        if mistake != "z0_not_detached":
            kl = kl.detach()
        chosen = policy_logps[desirable] - reference_logps[desirable]
        rejected = policy_logps[~desirable] - reference_logps[~desirable]
        chosen_losses = 1 - torch.sigmoid(beta * (chosen - kl))
        rejected_losses = 1 - torch.sigmoid(beta * (kl - rejected))
        losses = torch.cat(
            (desirable_weight * chosen_losses, undesirable_weight * rejected_losses), 0
        )
        return losses.nanmean()

    return kto


def given_z0_kto(policy_logps, reference_logps, desirable, z0, *, beta, desirable_weight,
                 undesirable_weight):
    """A PyTorch KTO loss taking z0, returning loss, per-example losses and rewards."""
    logratios = policy_logps - reference_logps
    def const(x):  # float64 constants: torch.where of two Python floats would be float32
        return torch.tensor(x, dtype=logratios.dtype)

    sign = torch.where(desirable, const(1.0), const(-1.0))
    weight = torch.where(desirable, const(desirable_weight), const(undesirable_weight))
    losses = weight * torch.sigmoid(-sign * beta * (logratios - z0))
    return losses.mean(), losses, beta * logratios.detach()


def trl_signature_kto(self, policy_chosen_logps, policy_rejected_logps, policy_KL_logps,
                      reference_chosen_logps, reference_rejected_logps, reference_KL_logps):
    """TRL 0.19's kto_loss, from its formulas: (losses chosen-then-rejected, chosen rewards,
    rejected rewards, kl)."""
    kl = (policy_KL_logps - reference_KL_logps).mean().detach().clamp(min=0)
    chosen = policy_chosen_logps - reference_chosen_logps
    rejected = policy_rejected_logps - reference_rejected_logps
    chosen_losses = 1 - torch.sigmoid(self.beta * (chosen - kl))
    rejected_losses = 1 - torch.sigmoid(self.beta * (kl - rejected))
    losses = torch.cat((self.desirable_weight * chosen_losses,
                        self.undesirable_weight * rejected_losses), 0)
    return losses, self.beta * chosen.detach(), self.beta * rejected.detach(), kl


def near_verbatim_with_minikto_signature(policy_logps, reference_logps, desirable,
                                         kl_policy_logps, kl_reference_logps, *, beta,
                                         desirable_weight, undesirable_weight):
    """TRL's computation called with minikto's arguments, returning its per-example losses
    and rewards in TRL's concatenated order."""
    losses, chosen_rewards, rejected_rewards, _ = trl_signature_kto(
        type("Trainer", (), dict(beta=beta, desirable_weight=desirable_weight,
                                 undesirable_weight=undesirable_weight))(),
        policy_logps[desirable], policy_logps[~desirable], kl_policy_logps,
        reference_logps[desirable], reference_logps[~desirable], kl_reference_logps)
    return losses.nanmean(), losses, torch.cat((chosen_rewards, rejected_rewards))


def sigmoid_of_minus_z(policy_logps, reference_logps, desirable, z0, *, beta,
                       desirable_weight, undesirable_weight):
    """No explicit detach (z0 is given, a constant); torch.sigmoid(-z)."""
    sign = desirable.to(torch.float64) * 2 - 1
    weight = torch.where(desirable, torch.tensor(desirable_weight, dtype=torch.float64),
                         torch.tensor(undesirable_weight, dtype=torch.float64))
    return (weight * torch.sigmoid(-sign * beta * (policy_logps - reference_logps - z0))).mean()


def exp_of_logsigmoid(policy_logps, reference_logps, desirable, z0, *, beta,
                      desirable_weight, undesirable_weight):
    sign = desirable.to(torch.float64) * 2 - 1
    kind = desirable.to(torch.float64)  # (bool * float gives float32 in torch 2.14: fails)
    weight = kind * desirable_weight + (1 - kind) * undesirable_weight
    z = sign * beta * (policy_logps - reference_logps - z0)
    return (weight * torch.exp(torch.nn.functional.logsigmoid(-z))).sum() / z.shape[0]


def self_paired_detached(policy_logps, reference_logps, desirable, kl_policy_logps,
                         kl_reference_logps, *, beta, desirable_weight, undesirable_weight):
    """The mistake: z0 from the matched pairs, detached as TRL detaches it."""
    z0 = (policy_logps - reference_logps).mean().clamp(min=0).detach()
    return given_z0_kto(policy_logps, reference_logps, desirable, z0, beta=beta,
                        desirable_weight=desirable_weight,
                        undesirable_weight=undesirable_weight)[0]


def test_trls_signature_is_accepted_as_it_is_with_z0_estimated():
    report = minikto.check_kto(trl_signature_kto, num_random=60)
    assert report.passed, str(report)
    assert "TRL kto_loss signature" in report.settings and "z0 estimated" in report.settings
    names = [r.property for r in report.rows]
    assert "per-example losses" in names and "gradient wrt kl_policy_logps is 0 (z0 detached)" \
        in names


def test_trls_computation_returning_the_concatenated_order_passes_with_a_note():
    report = minikto.check_kto(near_verbatim_with_minikto_signature, z0="estimated",
                               num_random=60)
    assert report.passed, str(report)
    assert any("chosen first, then rejected" in note for note in report.notes)


@pytest.mark.parametrize("form", [sigmoid_of_minus_z, exp_of_logsigmoid, given_z0_kto],
                         ids=lambda f: f.__name__)
def test_float64_torch_forms_pass(form):
    report = minikto.check_kto(form, num_random=60)
    assert report.passed, str(report)


def test_z0_from_matched_pairs_in_an_autograd_port_is_named():
    report = minikto.check_kto(self_paired_detached, z0="estimated", num_random=60)
    assert report.variants == ["kl_self_paired"], str(report)
    assert "Fix:" in report.diagnosis


def test_the_framework_is_detected_from_the_function_module():
    from minikto.tools.check_call import detect_framework

    assert detect_framework(trl_style_kto()) == "torch"
    assert detect_framework(minikto.kto_loss) == "numpy"
    assert detect_framework(trl_style_kto(), "numpy") == "numpy"


def test_a_trl_style_pytorch_kto_passes_with_autograd_gradients():
    report = minikto.check_kto(trl_style_kto(), z0="estimated")
    assert report.passed and report.diagnosis is None, str(report)
    assert "torch, gradients by autograd" in report.settings
    kl_row = next(r for r in report.rows if "kl_policy_logps" in r.property)
    assert kl_row.passed and kl_row.worst_difference == 0.0


def test_a_pytorch_copy_with_the_clamp_before_the_mean_is_diagnosed_as_such():
    report = minikto.check_kto(trl_style_kto("clamp_before_mean"), z0="estimated")
    assert not report.passed
    assert report.variants == ["clamp_before_mean"], str(report)
    assert "clamped AFTER the mean" in report.diagnosis


def test_a_pytorch_copy_that_does_not_detach_z0_is_diagnosed_through_autograd():
    report = minikto.check_kto(trl_style_kto("z0_not_detached"), z0="estimated",
                               num_random=100)
    assert not report.passed
    values = [r for r in report.rows if r.property.startswith("loss on")]
    assert all(r.passed for r in values)  # the values are right: only the gradient is wrong
    assert report.variants == ["z0_not_detached"], str(report)


def test_a_pytorch_kto_with_z0_given_passes_and_its_tuple_outputs_are_compared():
    report = minikto.check_kto(given_z0_kto, num_random=100)
    assert report.passed, str(report)
    names = [r.property for r in report.rows]
    assert "per-example losses" in names
    assert "rewards = beta * (policy_logps - reference_logps)" in names


def test_a_pytorch_sequence_function_is_checked_with_autograd():
    def summed(token_logps, mask):
        return (token_logps * mask).sum(-1)

    def averaged(token_logps, mask):
        return (token_logps * mask).sum(-1) / mask.sum(-1)

    good = minikto.check_kto(given_z0_kto, num_random=10, sequence_fn=summed)
    assert good.passed, str(good)
    bad = minikto.check_kto(given_z0_kto, num_random=10, sequence_fn=averaged)
    assert not bad.passed and bad.diagnosis.startswith("token_logps_averaged: ")


def test_a_detached_pytorch_sequence_function_fails_its_gradient_row():
    def detached(token_logps, mask):
        return (token_logps * mask).sum(-1).detach()

    report = minikto.check_kto(given_z0_kto, num_random=5, sequence_fn=detached)
    rows = {r.property: r for r in report.rows}
    assert rows["sequence_fn: sum of the response tokens' log-probs"].passed
    assert not rows["sequence_fn: gradient is the mask"].passed and not report.passed
