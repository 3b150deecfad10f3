"""Reading a dataset in any of the formats TRL's trainers read, for training.

``minikto train --data`` reads through :func:`read_for_training`: TRL's unpaired and paired
formats (:mod:`minikto.data.jsonl`), a paired file unpaired for an unpaired loss as TRL's
``KTOTrainer`` unpairs it, and the single-turn conversational forms of both, whose values
are lists of ``{"role", "content"}`` messages. Multi-turn conversations are refused: the
toy's prompts are single requests, and guessing which turn to keep would train on data the
user did not mean.
"""

from __future__ import annotations

import os

from .._brief import brief
from .feedback import PairedDataset, UnpairedDataset, unpair
from .jsonl import (
    _PAIRED_KEYS,
    _UNPAIRED_KEYS,
    DatasetFormatError,
    _check_task,
    _kind,
    _paired,
    _records,
    _require_keys,
    _unpaired,
)
from .toy import ToyTask

__all__ = ["read_for_training"]


def read_for_training(
    path: str | os.PathLike[str], task: ToyTask, *, paired: bool
) -> tuple[UnpairedDataset | PairedDataset, list[str]]:
    """Read a dataset in any of the formats TRL's trainers read, for a paired or unpaired loss.

    The format is told by the first record's keys, and every record must then hold them:

    - unpaired ``{"prompt", "completion", "label"}`` (what ``KTOTrainer`` reads);
    - paired ``{"prompt", "chosen", "rejected"}`` (what ``DPOTrainer`` reads). For an
      unpaired loss (``paired=False``) the pairs are unpaired as ``KTOTrainer`` unpairs them
      (:func:`~minikto.data.feedback.unpair`): every chosen completion becomes a desirable
      example and every rejected one an undesirable example, 2N examples from N pairs;
    - either one conversational: ``prompt`` a list holding one ``{"role": "user",
      "content": ...}`` message and each completion a list holding one ``{"role":
      "assistant", "content": ...}`` message. The contents are read as text. A conversation
      of several messages (multi-turn, or with a system message) is refused: the toy's
      prompts are single requests.

    Parameters
    ----------
    path : str or PathLike
        A JSON Lines file.
    task : ToyTask
        Turns the text into ids.
    paired : bool
        True for a paired loss (DPO), which needs paired records.

    Returns
    -------
    dataset : UnpairedDataset or PairedDataset
        Paired exactly when ``paired`` is True.
    notes : list of str
        One line per thing a user should know about the reading (the format found, the
        unpairing), for the training log.

    Raises
    ------
    DatasetFormatError
        On bad content, on unpaired records for a paired loss, on the implicit-prompt format
        (no ``prompt`` key) and on multi-turn conversations, naming the file and the line.
    """
    _check_task(task)
    if not isinstance(paired, bool):
        raise TypeError(f"paired: expected a bool; got {brief(paired)}")
    records = list(_records(path, ()))
    line, first = records[0]
    file_paired = _paired_format(path, line, first, paired)
    keys = _PAIRED_KEYS if file_paired else _UNPAIRED_KEYS
    for number, record in records:
        _require_keys(path, number, record, keys)
    conversational = any(isinstance(record.get("prompt"), list) for _, record in records)
    style = "conversational " if conversational else ""
    notes = [f"{os.fspath(path)}: TRL's {style}{'paired' if file_paired else 'unpaired'} "
             f"format ({', '.join(keys)}), {len(records)} records"]
    if conversational:
        notes.append("conversational records: read the content of each single-message "
                     "prompt and completion")
    if not file_paired:
        return _unpaired(path, records, task, _text), notes
    pairs = _paired(path, records, task, _text)
    if paired:
        return pairs, notes
    notes.append(
        f"unpaired the {len(pairs)} pairs as TRL's KTOTrainer does: each chosen completion "
        f"a desirable example, each rejected one undesirable ({2 * len(pairs)} examples)"
    )
    return unpair(pairs), notes


def _paired_format(path: str | os.PathLike[str], line: int, record: dict, paired: bool) -> bool:
    """Whether the first record is paired; refuses what neither format nor the loss can take."""
    if "chosen" in record or "rejected" in record:
        if "prompt" not in record:
            raise DatasetFormatError(
                path, line, "missing key 'prompt': TRL's implicit-prompt format (the prompt "
                "inside 'chosen' and 'rejected') is not read; give the prompt as its own key "
                "'prompt' and only the completions in 'chosen' and 'rejected'"
            )
        return True
    if "completion" in record or "label" in record:
        if paired:
            raise DatasetFormatError(
                path, line, "missing key 'chosen': a paired loss (dpo) needs TRL's paired "
                f"records with the keys {', '.join(map(repr, _PAIRED_KEYS))}; got an unpaired "
                f"record ({', '.join(map(repr, record))}), and unpaired feedback cannot be "
                "paired: use an unpaired loss (kto, apo_zero_unpaired, sft)"
            )
        return False
    raise DatasetFormatError(
        path, line, f"expected TRL's unpaired keys {', '.join(map(repr, _UNPAIRED_KEYS))} or "
        f"paired keys {', '.join(map(repr, _PAIRED_KEYS))}; got "
        f"{', '.join(map(repr, record)) or 'none'}"
    )


def _text(path: str | os.PathLike[str], number: int, record: dict, key: str) -> str:
    """A field's text: a JSON string, or the content of a single-message conversation."""
    value = record[key]
    if isinstance(value, str):
        return value
    if not isinstance(value, list):
        raise DatasetFormatError(
            path, number,
            f"{key}: expected a JSON string or a single-turn conversation; got {_kind(value)}",
        )
    role = "user" if key == "prompt" else "assistant"
    for message in value:
        if (not isinstance(message, dict) or not isinstance(message.get("role"), str)
                or not isinstance(message.get("content"), str)):
            raise DatasetFormatError(
                path, number, f"{key}: expected messages {{\"role\": ..., \"content\": ...}} "
                f"with string values; got {_kind(message)}"
            )
    roles = [message["role"] for message in value]
    if roles != [role]:
        raise DatasetFormatError(
            path, number, f"{key}: expected a single-turn conversation, one {role!r} message; "
            f"got {len(roles)} messages with the roles {roles}. Multi-turn conversations are "
            f"not read (the toy's prompts are single requests): keep the last user message as "
            f"'prompt' and the assistant's answer as the completion, or write the standard "
            f"format with strings"
        )
    return value[0]["content"]
