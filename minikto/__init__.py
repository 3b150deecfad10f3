"""minikto: KTO (Kahneman-Tversky Optimization) from scratch, every gradient by hand.

Reading order of the math (the top level of the package):

1. :mod:`minikto.backend`: the array namespace ``xp``; stable log-softmax, log-sigmoid,
   scatter-add, written once;
2. :mod:`minikto.features`: tabular and embedding feature maps, forward and backward;
3. :mod:`minikto.policy`: :class:`SoftmaxPolicy`, ``sequence_logps`` and its backward pass;
4. :mod:`minikto.kto`: :func:`kto_loss`, :func:`kl_estimate`, :func:`mismatched_indices`;
5. :mod:`minikto.losses`: :func:`dpo_loss`, :func:`sft_loss`, :func:`apo_zero_unpaired_loss`;
   :mod:`minikto.pairwise`: :func:`preference_loss`, TRL's 13 pairwise loss types;
   :mod:`minikto.reference_free` (SimPO, ORPO), :mod:`minikto.bco` (BCO) and
   :mod:`minikto.halo` (which of them are HALOs);
6. :mod:`minikto.exact`: :func:`response_space`, :func:`exact_kl`, :class:`ExactEvaluator`;
7. :mod:`minikto.objective`: :func:`kto_objective`, :class:`FlatObjective`;
8. :mod:`minikto.gradcheck`: :func:`gradcheck` and the self-check.

Then the sub-packages, by role: ``data/`` (:class:`ToyTask`, :func:`default_task`,
:func:`bandit_task`, :func:`sample_unpaired`, :func:`sample_paired`, :func:`unpair`, the JSON
Lines readers and writers), ``training/`` (:class:`KTOConfig`, :func:`train`,
:func:`check_weight_balance`, optimizers, checkpoints), ``tools/`` (command line, demo, plots,
reference vectors, :func:`check_kto` for a KTO written elsewhere), ``experiments/`` (the
paper's claims on a toy), and ``fast/`` (CPU tuning, optional reading: the block-wise form of
the policy's passes, in-place kernels, quick answers for the checks). Input checks are written
once in ``_checks`` (numbers, log-prob vectors, labels) and ``_token_checks`` (token batches),
and run once where data enter: a checked :class:`~minikto.policy.TokenBatch` needs no other.
"""

from ._version import __version__ as __version__
from .backend import get_namespace, to_numpy
from .data.feedback import PairedDataset, UnpairedDataset, sample_paired, sample_unpaired, unpair
from .data.jsonl import DatasetFormatError, read_paired, read_unpaired, write_paired, write_unpaired
from .data.toy import ToyTask, bandit_task, default_task
from .exact import ExactEvaluator, exact_kl, response_space
from .gradcheck import GradcheckReport, gradcheck
from .kto import KLEstimate, KTOLoss, kl_estimate, kto_loss, mismatched_indices
from .losses import APOZeroLoss, DPOLoss, SFTLoss, apo_zero_unpaired_loss, dpo_loss, sft_loss
from .objective import Z0_MODES, FlatObjective, kto_objective
from .pairwise import PAIRWISE_LOSS_TYPES, PreferenceLoss, preference_loss
from .policy import SoftmaxPolicy
from .tools.check import KTOCheckReport, check_kto
from .training.config import (
    KTOConfig,
    WeightBalanceWarning,
    balanced_desirable_weight,
    check_weight_balance,
)
from .training.train import TrainResult, train

__all__ = [
    "APOZeroLoss",
    "SFTLoss",
    "DPOLoss",
    "DatasetFormatError",
    "ExactEvaluator",
    "FlatObjective",
    "GradcheckReport",
    "KLEstimate",
    "KTOCheckReport",
    "KTOConfig",
    "KTOLoss",
    "PAIRWISE_LOSS_TYPES",
    "PairedDataset",
    "PreferenceLoss",
    "SoftmaxPolicy",
    "ToyTask",
    "TrainResult",
    "UnpairedDataset",
    "WeightBalanceWarning",
    "Z0_MODES",
    "apo_zero_unpaired_loss",
    "balanced_desirable_weight",
    "bandit_task",
    "check_kto",
    "check_weight_balance",
    "default_task",
    "dpo_loss",
    "exact_kl",
    "get_namespace",
    "gradcheck",
    "kl_estimate",
    "kto_loss",
    "kto_objective",
    "mismatched_indices",
    "preference_loss",
    "read_paired",
    "read_unpaired",
    "response_space",
    "sample_paired",
    "sample_unpaired",
    "sft_loss",
    "to_numpy",
    "train",
    "unpair",
    "write_paired",
    "write_unpaired",
]
