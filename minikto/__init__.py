"""minikto: KTO (Kahneman-Tversky Optimization) from scratch, every gradient by hand."""

from .backend import get_namespace, to_numpy
from .kto import KLEstimate, KTOLoss, kl_estimate, kto_loss, mismatched_indices
from .policy import SoftmaxPolicy

__version__ = "0.1.0"

__all__ = [
    "KLEstimate",
    "KTOLoss",
    "SoftmaxPolicy",
    "get_namespace",
    "kl_estimate",
    "kto_loss",
    "mismatched_indices",
    "to_numpy",
]
