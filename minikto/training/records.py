"""What a run folder records besides the checkpoint: the run's identity and its JSON Lines logs.

- :func:`data_identity`: the data a run trained on (where they came from, as the caller says,
  plus a sha256 of the example arrays themselves), so a resume on other data is refused;
- :func:`run_record`: ``config.json``'s content: the configuration, the data, the command
  line and the versions of minikto, NumPy and Python;
- :class:`JsonlLog`: ``metrics.jsonl`` and ``evals.jsonl``, appended at each save (the cost
  of a save does not grow with the run) and cut back to their last complete state if a
  write fails; the checkpoint records how many rows and bytes of each belong to it;
- :func:`read_rows`: the rows a checkpoint vouches for, each one checked.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._brief import brief
from ..data.atomic import atomic_write
from ..data.feedback import PairedDataset
from ..data.files import MAX_DATA_BYTES, open_user_file
from .checkpoint import CheckpointError, check_count

__all__ = ["JsonlLog", "data_identity", "describe_difference", "read_rows", "run_record",
           "same_data"]


def data_identity(data: Any, source: Mapping[str, Any] | None) -> dict[str, Any]:
    """``source`` (path and file sha256, or task, n and seed) plus the arrays' own sha256.

    The hash covers each array's name, dtype, shape and bytes, so any change to an example,
    a label or the order of the examples changes it.
    """
    if source is not None and (
        not isinstance(source, Mapping) or not all(isinstance(k, str) for k in source)
    ):
        raise TypeError(f"data_source: expected a dict with str keys; got {brief(source)}")
    paired = isinstance(data, PairedDataset)
    names = ("prompts", "chosen", "rejected") if paired else ("prompts", "responses", "desirable")
    digest = hashlib.sha256()
    for name in names:
        array = np.ascontiguousarray(np.asarray(getattr(data, name)))
        digest.update(f"{name}:{array.dtype.str}:{array.shape};".encode())
        digest.update(array.tobytes())
    identity = {**dict(source or {}), "kind": "paired" if paired else "unpaired",
                "examples": len(data), "arrays_sha256": digest.hexdigest()}
    _json_text(identity, "data_source")
    return identity


def run_record(
    config: dict[str, Any], identity: dict[str, Any], command: Sequence[str] | None
) -> dict[str, Any]:
    """The content of ``config.json``: every KTOConfig field, then data, command, versions.

    Raises ValueError naming a field whose value JSON cannot hold as it is (a NumPy scalar,
    say), before any folder is created.
    """
    from .._version import __version__

    for name, value in config.items():
        _json_text(value, f"config.{name}", numbers_only=True)
    if command is not None and (
        isinstance(command, str) or not all(isinstance(a, str) for a in command)
    ):
        raise TypeError(
            f"command: expected a list of str (such as sys.argv); got {brief(command)}"
        )
    return {
        **config,
        "data": identity,
        "command": None if command is None else list(command),
        "versions": {"minikto": __version__, "numpy": np.__version__,
                     "python": platform.python_version()},
    }


def _json_text(value: Any, name: str, *, numbers_only: bool = False) -> str:
    if numbers_only and not isinstance(value, (str, int, float, bool, type(None))):
        raise TypeError(
            f"{name}: expected a plain Python value (str, int, float, bool or None); got "
            f"{brief(value)} of type {type(value).__name__}"
        )
    try:
        return json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name}: expected a JSON value; {err}") from None


def same_data(saved: Mapping[str, Any], now: Mapping[str, Any]) -> bool:
    """Are two :func:`data_identity` records the same data? Compared by content (digests,
    sizes, task and seed), never by the spelling of the file's path."""
    return {k: v for k, v in saved.items() if k != "path"} == {
        k: v for k, v in now.items() if k != "path"}


def describe_difference(saved: Mapping[str, Any], now: Mapping[str, Any]) -> str:
    """``key: saved X, now Y`` for every key whose value differs."""
    keys = sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k))
    return ", ".join(f"{k}: saved {brief(saved.get(k))}, now {brief(now.get(k))}" for k in keys)


class JsonlLog:
    """A JSON Lines file that grows by appending; ``rows`` and ``size`` describe its content."""

    def __init__(self, path: Path) -> None:
        self.path, self.rows, self.size = path, 0, 0

    def rewrite(self, rows: Sequence[dict[str, Any]]) -> None:
        """Replace the file (atomically) with exactly ``rows``."""
        text = "".join(_line(r) for r in rows)
        with atomic_write(self.path, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
        self.rows, self.size = len(rows), len(text.encode("utf-8"))

    def append(self, rows: Sequence[dict[str, Any]]) -> None:
        """Append the rows beyond :attr:`rows` (fsync'ed); on failure cut back and re-raise."""
        new = "".join(_line(r) for r in rows[self.rows:]).encode("utf-8")
        if not new:
            return
        try:
            with open(self.path, "r+b") as f:
                f.seek(self.size)
                f.truncate()
                f.write(new)
                f.flush()
                os.fsync(f.fileno())
        except OSError as err:
            try:
                with open(self.path, "r+b") as f:
                    f.truncate(self.size)
            except OSError:
                pass  # the checkpoint still says how much of the file is valid
            reason = err.strerror or str(err) or type(err).__name__
            raise type(err)(f"could not write {self.path}: {reason}") from err
        self.rows, self.size = len(rows), self.size + len(new)

    def position(self) -> dict[str, int]:
        """What a checkpoint records: rows and bytes written so far."""
        return {"rows": self.rows, "bytes": self.size}


def _line(row: dict[str, Any]) -> str:
    return json.dumps(row, allow_nan=False) + "\n"


def read_rows(path: Path, position: Any, checkpoint: Path, entry: str) -> list[dict[str, Any]]:
    """The first ``position["rows"]`` rows of ``path``, within ``position["bytes"]`` bytes.

    Every row must be a JSON object with an integer ``step`` and finite numbers (or null)
    elsewhere; any failure is a CheckpointError naming the checkpoint, the entry and the file.
    """
    if not isinstance(position, dict):
        raise CheckpointError(
            f"checkpoint {checkpoint}: entry extra.{entry}: expected the history and "
            f"evaluations a training run saves; got {brief(position)}"
        )
    rows = check_count(position.get("rows"), f"extra.{entry}.rows", checkpoint)
    size = check_count(position.get("bytes"), f"extra.{entry}.bytes", checkpoint)
    try:
        with open_user_file(path, name=f"checkpoint {checkpoint}: entry extra.{entry}",
                            max_bytes=MAX_DATA_BYTES) as f:
            raw = f.read(size)
    except FileNotFoundError:
        raise CheckpointError(
            f"checkpoint {checkpoint}: entry extra.{entry}: expected {path} with {rows} rows; "
            "the file is missing"
        ) from None
    lines = raw.decode("utf-8", errors="replace").splitlines()
    if len(raw) != size or len(lines) != rows or (raw and not raw.endswith(b"\n")):
        raise CheckpointError(
            f"checkpoint {checkpoint}: entry extra.{entry}: expected {rows} rows in the first "
            f"{size} bytes of {path}; the file holds {len(lines)} rows in {len(raw)} bytes"
        )
    out = []
    for number, text in enumerate(lines, 1):
        try:
            row = json.loads(text, parse_constant=_no_constant)
        except ValueError as err:
            raise CheckpointError(
                f"checkpoint {checkpoint}: entry extra.{entry}: line {number} of {path} is not "
                f"JSON ({err})"
            ) from None
        if not isinstance(row, dict) or not _valid_row(row):
            raise CheckpointError(
                f"checkpoint {checkpoint}: entry extra.{entry}: line {number} of {path}: "
                "expected an object with an integer step and finite numbers or null"
            )
        out.append(row)
    return out


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not a finite number")


def _valid_row(row: dict[str, Any]) -> bool:
    step = row.get("step")
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        return False
    return all(
        v is None or (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v))
        for k, v in row.items()
    )
