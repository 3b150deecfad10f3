"""A method of one of TRL's trainers, callable without building the trainer (for the TRL tests).

``trl_method("dpo_trainer", "DPOTrainer", "dpo_loss")`` returns ``DPOTrainer.dpo_loss`` of the
installed TRL, to be called unbound on a stand-in object that holds the attributes it reads.

Where the trainer module itself cannot be imported because the installed transformers is newer
than that TRL supports (trl 0.19.1 with transformers 5.24 fails on a removed name), the method
is compiled from TRL's installed source file, unchanged, in the namespace its body uses (torch,
``torch.nn.functional`` as ``F``, and TRL's own ``FDivergenceType``, ``FDivergenceConstants``,
``cap_exp``): the same code runs, only the trainer module's unrelated imports are skipped.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util

import torch
from trl.trainer import utils as trl_utils
from trl.trainer.dpo_config import FDivergenceConstants, FDivergenceType


def trl_method(module: str, cls: str, name: str):
    try:
        return getattr(getattr(importlib.import_module(f"trl.trainer.{module}"), cls), name)
    except ImportError:
        pass
    path = importlib.util.find_spec(f"trl.trainer.{module}").origin
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read())
    owner = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == cls)
    method = next(n for n in owner.body if getattr(n, "name", None) == name)
    method.decorator_list = []  # a @staticmethod or @torch.no_grad() is not needed unbound
    namespace = {
        "torch": torch,
        "F": torch.nn.functional,
        "FDivergenceType": FDivergenceType,
        "FDivergenceConstants": FDivergenceConstants,
        "cap_exp": trl_utils.cap_exp,
    }
    exec(compile("from __future__ import annotations\n", path, "exec"), namespace)
    exec(compile(ast.Module(body=[method], type_ignores=[]), path, "exec"), namespace)
    return namespace[name]
