"""Checkpoints: a policy, its optimizer state and the step, in one versioned ``.npz`` file.

A checkpoint is written atomically (:mod:`minikto.data.atomic`), so a crash while saving leaves
the previous checkpoint intact. Loading refuses, with a clear error, a file that is truncated
or not a minikto checkpoint, one of another format version, and one whose configuration
differs from the run's in anything that would change the trajectory.
"""

from __future__ import annotations

import json
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from ..backend import to_numpy
from ..data.atomic import atomic_write

__all__ = ["CHECKPOINT_FORMAT", "CheckpointError", "load_checkpoint", "save_checkpoint"]

#: Bumped whenever the layout changes; older or newer files are refused.
CHECKPOINT_FORMAT = 1

#: Config fields that may differ between the saving and the resuming run.
RESUMABLE_CHANGES = ("max_steps", "eval_every", "checkpoint_every", "progress")


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: unreadable, foreign, or incompatible."""


def save_checkpoint(
    path: str | Path,
    *,
    step: int,
    params: dict[str, Any],
    optimizer_state: dict[str, np.ndarray],
    config: dict[str, Any],
    extra: dict[str, Any] | None = None,
) -> None:
    """Write a checkpoint atomically.

    Parameters
    ----------
    path : str or Path
        The ``.npz`` file.
    step : int
        Optimizer steps taken so far.
    params : dict name -> array
        The policy parameters (any backend; stored as NumPy).
    optimizer_state : dict name -> NumPy array
    config : dict
        The run's configuration (``KTOConfig.to_dict()``).
    extra : dict, optional
        Any other JSON-able metadata.
    """
    meta = {
        "format": "minikto-checkpoint",
        "version": CHECKPOINT_FORMAT,
        "step": int(step),
        "config": config,
        "extra": extra or {},
    }
    arrays = {f"param.{k}": to_numpy(v) for k, v in params.items()}
    arrays.update({f"optim.{k}": np.asarray(v) for k, v in optimizer_state.items()})
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)
    with atomic_write(path, "wb") as handle:
        np.savez(handle, **arrays)


def load_checkpoint(path: str | Path, *, config: dict[str, Any] | None = None) -> dict[str, Any]:
    """Read a checkpoint; check it against the resuming run's ``config`` when given.

    Returns
    -------
    dict
        ``step`` (int), ``params`` and ``optimizer_state`` (dicts of NumPy arrays),
        ``config`` and ``extra`` (as saved).

    Raises
    ------
    CheckpointError
        Unreadable, truncated or foreign file; other format version; incompatible config.
    """
    path = Path(path)
    try:
        data = np.load(path, allow_pickle=False)
        if not isinstance(data, np.lib.npyio.NpzFile):  # a plain .npy file
            raise ValueError("a single .npy array, not an .npz archive")
        with data:
            arrays = {k: data[k] for k in data.files}
    except FileNotFoundError:
        raise
    except (
        OSError,
        ValueError,
        EOFError,
        zipfile.BadZipFile,
        zlib.error,
        NotImplementedError,  # zipfile: a damaged header claims an unknown method or version
        RuntimeError,  # zipfile: a damaged header claims an encrypted member
    ) as err:
        raise CheckpointError(
            f"checkpoint {path}: expected a minikto .npz checkpoint; the file is truncated "
            f"or not one ({type(err).__name__}: {err})"
        ) from err
    foreign = sorted(k for k, v in arrays.items() if not isinstance(v, np.ndarray))
    if foreign:  # NpzFile hands back the raw bytes of a member that is not a .npy file
        raise CheckpointError(f"checkpoint {path}: expected .npy entries; got {foreign}")
    if "meta" not in arrays:
        raise CheckpointError(f"checkpoint {path}: expected a minikto checkpoint; no 'meta' entry")
    try:
        meta = json.loads(arrays.pop("meta").tobytes().decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as err:  # JSONDecodeError too
        raise CheckpointError(f"checkpoint {path}: its metadata is corrupt ({err})") from err
    if not isinstance(meta, dict) or meta.get("format") != "minikto-checkpoint":
        raise CheckpointError(f"checkpoint {path}: expected format 'minikto-checkpoint'")
    if meta.get("version") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"checkpoint {path}: expected format version {CHECKPOINT_FORMAT}; "
            f"got {meta.get('version')!r}"
        )
    step = meta.get("step")
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise CheckpointError(f"checkpoint {path}: expected a step count >= 0; got {step!r}")
    for key in ("config", "extra"):
        if not isinstance(meta.get(key, {}), dict):
            raise CheckpointError(
                f"checkpoint {path}: expected '{key}' to be a JSON object; "
                f"got {type(meta[key]).__name__}"
            )
    if config is not None:
        saved = meta.get("config", {})
        diff = sorted(
            k
            for k in set(saved) | set(config)
            if k not in RESUMABLE_CHANGES and saved.get(k) != config.get(k)
        )
        if diff:
            details = ", ".join(f"{k}: saved {saved.get(k)!r}, now {config.get(k)!r}" for k in diff)
            raise CheckpointError(
                f"checkpoint {path}: expected the configuration of this run; it differs in "
                f"{details}"
            )
    return {
        "step": step,
        "params": {k[6:]: v for k, v in arrays.items() if k.startswith("param.")},
        "optimizer_state": {k[6:]: v for k, v in arrays.items() if k.startswith("optim.")},
        "config": meta.get("config", {}),
        "extra": meta.get("extra", {}),
    }
