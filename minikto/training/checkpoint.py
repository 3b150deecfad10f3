"""Checkpoints: a policy, its optimizer state and the step, in one versioned ``.npz`` file.

A checkpoint is written atomically (:mod:`minikto.data.atomic`), so a crash while saving leaves
the previous checkpoint intact. Loading refuses, with a clear error, a file that is truncated
or not a minikto checkpoint, one of another format version, and one whose configuration
differs from the run's in anything that would change the trajectory.

:func:`save_checkpoint` refuses what :func:`load_checkpoint` would refuse (so a checkpoint
that was written can be read), and :func:`check_training_state` checks every entry of a
training run's checkpoint against the run about to continue from it: parameter names,
dtypes, shapes and finiteness, and the optimizer state's consistency with the step.
"""

from __future__ import annotations

import json
import math
import os
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from .._brief import brief
from ..backend import to_numpy
from ..data.atomic import atomic_write
from ..data.files import open_user_file

__all__ = [
    "CHECKPOINT_FORMAT",
    "CheckpointError",
    "check_training_state",
    "load_checkpoint",
    "save_checkpoint",
]

#: Bumped whenever the layout changes; older or newer files are refused.
CHECKPOINT_FORMAT = 1

#: The largest checkpoint file read (4 GiB; the default toy's is a few kilobytes).
MAX_CHECKPOINT_BYTES = 1 << 32

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
    if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 0:
        raise ValueError(f"step: expected an int >= 0; got {brief(step)}")
    for name, value in (("config", config), ("extra", extra or {})):
        if not isinstance(value, dict):
            raise TypeError(f"{name}: expected a dict; got {type(value).__name__}")
    meta = {
        "format": "minikto-checkpoint",
        "version": CHECKPOINT_FORMAT,
        "step": int(step),
        "config": config,
        "extra": extra or {},
    }
    try:  # NaN, inf and non-JSON values would come back as something else, or not at all
        text = json.dumps(meta, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise ValueError(
            f"config, extra: expected JSON values without NaN or inf ({err})"
        ) from None
    arrays = {f"param.{k}": _real_array(to_numpy(v), f"params[{k!r}]") for k, v in params.items()}
    arrays.update(
        {f"optim.{k}": _real_array(np.asarray(v), f"optimizer_state[{k!r}]", integer=True)
         for k, v in optimizer_state.items()}
    )
    arrays["meta"] = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
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
        with open_user_file(path, name=f"checkpoint {path}", max_bytes=MAX_CHECKPOINT_BYTES) as f:
            _check_member_sizes(f, os.fstat(f.fileno()).st_size)
            f.seek(0)
            data = np.load(f, allow_pickle=False)
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
        raise CheckpointError(f"checkpoint {path}: expected .npy entries; got {brief(foreign)}")
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
            f"got {brief(meta.get('version'))}"
        )
    step = meta.get("step")
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise CheckpointError(
            f"checkpoint {path}: expected a step count >= 0; got {brief(step)}"
        )
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
            details = ", ".join(
                f"{brief(k, 80).strip(chr(39))}: saved {brief(saved.get(k))}, "
                f"now {brief(config.get(k))}"
                for k in diff[:5]
            )
            raise CheckpointError(
                f"checkpoint {path}: expected the configuration of this run; it differs in "
                f"{details}"
            )
    for key, value in arrays.items():
        try:
            _real_array(value, key, integer=key.startswith("optim."))
        except ValueError as err:
            raise CheckpointError(f"checkpoint {path}: entry {err}") from None
    return {
        "step": step,
        "params": {k[6:]: v for k, v in arrays.items() if k.startswith("param.")},
        "optimizer_state": {k[6:]: v for k, v in arrays.items() if k.startswith("optim.")},
        "config": meta.get("config", {}),
        "extra": meta.get("extra", {}),
    }


def _check_member_sizes(f: Any, size: int) -> None:
    """Refuse a zip member that would expand past the file (a "zip bomb") before reading it.

    minikto stores its checkpoints uncompressed (``np.savez``), so no member holds more than
    the file's ``size`` bytes, and no ``.npy`` header declares an array larger than its
    member. A file that is not a zip archive is left to ``np.load`` to name.
    """
    if not zipfile.is_zipfile(f):
        return
    f.seek(0)
    with zipfile.ZipFile(f) as archive:
        for info in archive.infolist():
            name = brief(info.filename, 80)
            if info.file_size > size:
                raise ValueError(
                    f"member {name} declares {info.file_size} bytes once uncompressed, more "
                    f"than the {size} bytes of the whole file (minikto stores checkpoints "
                    "uncompressed)"
                )
            if not info.filename.endswith(".npy"):
                continue
            try:
                with archive.open(info) as member:
                    version = np.lib.format.read_magic(member)
                    read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                            else np.lib.format.read_array_header_2_0)
                    shape, _, dtype = read(member)
            except ValueError:  # not a .npy header: np.load names it
                continue
            nbytes = math.prod(shape) * dtype.itemsize
            if nbytes > info.file_size:
                raise ValueError(
                    f"member {name} declares an array of shape {brief(shape, 80)} "
                    f"({nbytes} bytes) in {info.file_size} bytes"
                )


def _real_array(value: Any, name: str, *, integer: bool = False) -> np.ndarray:
    """``value`` if it is a finite real float array (or, with ``integer``, an int array)."""
    kinds = "fiu" if integer else "f"
    if not isinstance(value, np.ndarray) or value.dtype.kind not in kinds:
        dtype = getattr(value, "dtype", type(value).__name__)
        raise ValueError(f"{name}: expected a real {'number' if integer else 'float'} array; "
                         f"got {dtype}")
    if value.dtype.kind == "f" and not np.all(np.isfinite(value)):
        raise ValueError(f"{name}: expected finite values; got NaN or inf")
    return value


def check_training_state(
    state: dict[str, Any],
    path: str | Path,
    *,
    params: dict[str, tuple[tuple[int, ...], str]],
    optimizer: str,
) -> None:
    """Refuse a training run's checkpoint whose entries do not fit the run resuming from it.

    Parameters
    ----------
    state : dict
        What :func:`load_checkpoint` returned.
    path : path
        The checkpoint (named in the error).
    params : dict name -> (shape, dtype name)
        The parameters of the resuming run's policy.
    optimizer : "adam" or "sgd"

    Raises
    ------
    CheckpointError
        Naming the checkpoint and the first entry that does not fit.
    """
    saved = {k: (tuple(v.shape), v.dtype.name) for k, v in state["params"].items()}
    if saved != params:
        if {k: s for k, (s, _) in saved.items()} != {k: s for k, (s, _) in params.items()}:
            shapes = {k: s for k, (s, _) in params.items()}
            got = {k: s for k, (s, _) in saved.items()}
            raise CheckpointError(
                f"checkpoint {path}: expected parameters {shapes} for this task and model; "
                f"got {got}"
            )
        bad = next(k for k in params if saved[k] != params[k])
        raise CheckpointError(
            f"checkpoint {path}: entry param.{bad}: expected dtype {params[bad][1]}; "
            f"got {saved[bad][1]}"
        )
    step, opt = state["step"], state["optimizer_state"]
    t = opt.get("t")
    if t is None or t.shape != () or t.dtype.kind not in "iu" or int(t) != step:
        raise CheckpointError(
            f"checkpoint {path}: entry optim.t: expected the integer step count {step}; "
            f"got {brief(t)}"
        )
    expected = {"t"}
    if optimizer == "adam" and step > 0:
        expected |= {f"{m}.{k}" for m in ("m", "v") for k in params}
    if set(opt) != expected:
        raise CheckpointError(
            f"checkpoint {path}: entry optim: expected the {optimizer} state "
            f"{sorted(expected)}; got {sorted(opt)}"
        )
    for key in sorted(expected - {"t"}):
        shape, dtype = params[key[2:]]
        value = opt[key]
        if (tuple(value.shape), value.dtype.name) != (shape, dtype):
            raise CheckpointError(
                f"checkpoint {path}: entry optim.{key}: expected shape {shape} and dtype "
                f"{dtype}; got {tuple(value.shape)} and {value.dtype.name}"
            )
        if key.startswith("v.") and np.any(value < 0):
            raise CheckpointError(
                f"checkpoint {path}: entry optim.{key}: expected second moments >= 0"
            )


def check_count(value: Any, name: str, path: str | Path, *, low: int = 0) -> int:
    """A JSON integer >= ``low`` from a checkpoint's metadata, or a CheckpointError."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise CheckpointError(
            f"checkpoint {path}: entry {name}: expected an integer >= {low}; got {brief(value)}"
        )
    return value

