"""TRL's own ``KTOTrainer.kto_loss`` passes ``minikto.check_kto`` as it is.

Skipped where TRL cannot be imported (CI has neither torch nor TRL). Measured with TRL 0.19.1
and torch 2.14.1 (CPU): ``pip install torch "trl==0.19.1"``. The check calls the unbound
method with a stand-in ``self`` holding ``beta``, the two weights, ``loss_type="kto"``,
``calculate_KL=True`` and an accelerator whose ``gather_for_metrics`` returns its argument (one
process), splits each batch into its chosen and rejected parts, and reads the per-example
losses and rewards back from TRL's concatenated, chosen-first order.
"""

from __future__ import annotations

import pytest

import minikto

trl = pytest.importorskip("trl")
kto_trainer = pytest.importorskip("trl.trainer.kto_trainer")


def test_the_installed_trl_is_the_version_this_file_names():
    assert trl.__version__.startswith("0.19."), trl.__version__


def test_trls_kto_loss_passes_as_it_is():
    report = minikto.check_kto(kto_trainer.KTOTrainer.kto_loss, num_random=60)
    assert report.passed and report.diagnosis is None, str(report)
    assert "TRL kto_loss signature" in report.settings
    assert "torch, gradients by autograd" in report.settings
