"""minikto: KTO (Kahneman-Tversky Optimization) from scratch, every gradient by hand.

The public API, by concept:

- the model: :class:`SoftmaxPolicy`;
- the losses: :func:`kto_loss`, :func:`kl_estimate`, :func:`mismatched_indices`,
  :func:`dpo_loss`, :func:`sft_loss`, :func:`apo_zero_unpaired_loss`;
- the objective and its proof: :func:`kto_objective`, :class:`FlatObjective`,
  :func:`gradcheck`;
- exact quantities: :func:`exact_kl`, :func:`response_space`, :class:`ExactEvaluator`;
- data: :class:`ToyTask`, :func:`default_task`, :func:`bandit_task`,
  :func:`sample_unpaired`, :func:`sample_paired`, :func:`unpair`, the JSON Lines readers and
  writers;
- training: :class:`KTOConfig`, :func:`train`, :func:`check_weight_balance`.
"""

from .backend import get_namespace, to_numpy
from .data.feedback import PairedDataset, UnpairedDataset, sample_paired, sample_unpaired, unpair
from .data.jsonl import DatasetFormatError, read_paired, read_unpaired, write_paired, write_unpaired
from .data.toy import ToyTask, bandit_task, default_task
from .exact import ExactEvaluator, exact_kl, response_space
from .gradcheck import GradcheckReport, gradcheck
from .kto import KLEstimate, KTOLoss, kl_estimate, kto_loss, mismatched_indices
from .losses import APOZeroLoss, DPOLoss, SFTLoss, apo_zero_unpaired_loss, dpo_loss, sft_loss
from .objective import Z0_MODES, FlatObjective, kto_objective
from .policy import SoftmaxPolicy
from .tools.check import KTOCheckReport, check_kto  # noqa: F401 (public API)
from .training.config import (
    KTOConfig,
    WeightBalanceWarning,
    balanced_desirable_weight,
    check_weight_balance,
)
from .training.train import TrainResult, train

__version__ = "0.1.0"

__all__ = [
    "APOZeroLoss",
    "SFTLoss",
    "DPOLoss",
    "DatasetFormatError",
    "ExactEvaluator",
    "FlatObjective",
    "GradcheckReport",
    "KLEstimate",
    "KTOConfig",
    "KTOLoss",
    "PairedDataset",
    "SoftmaxPolicy",
    "ToyTask",
    "TrainResult",
    "UnpairedDataset",
    "WeightBalanceWarning",
    "Z0_MODES",
    "apo_zero_unpaired_loss",
    "balanced_desirable_weight",
    "bandit_task",
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
