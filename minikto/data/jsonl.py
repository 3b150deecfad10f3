"""Feedback datasets on disk in TRL's formats, as JSON Lines.

One JSON object per line, text rather than ids, so a file reads like data people collect:

- unpaired (KTO): ``{"prompt": "greet a friend", "completion": " hello friend .", "label": true}``
- paired (DPO): ``{"prompt": "greet a friend", "chosen": " hello friend .",
  "rejected": " whatever ."}``

Completions are written with a leading space. TRL tokenises ``prompt + completion``, the two
strings joined with nothing in between, so ``"greet a friend" + "hello friend ."`` would
read ``"greet a friendhello friend ."``, whose word ``friendhello`` no tokenizer splits back
into the two words; with the space the joined text is the words of the prompt followed by
the words of the completion. The readers split on whitespace, so they accept completions
with or without it.

:func:`~minikto.data.trl_formats.read_for_training` (built on this module) reads what
TRL's ``KTOTrainer`` and ``DPOTrainer`` read: either format, and their conversational forms
(values as lists of ``{"role", "content"}`` messages), as long as each holds a single turn.

Text and ids are converted through a :class:`~minikto.data.toy.ToyTask`: a prompt must be one of
the task's prompt texts (exact match); a completion is words of the vocabulary separated by
whitespace, ending at the end token ``.`` or cut at T tokens.

Writing is atomic: the records go to a temporary file in the destination's directory, which
is flushed and fsynced and then renamed over the destination with ``os.replace``. A crash
or an error midway leaves the previous file intact and no temporary file behind.

Reading is strict. Any bad content raises :class:`DatasetFormatError` (a ``ValueError``)
whose message names the file and the 1-based line number and says what is wrong: invalid or
truncated JSON, invalid UTF-8, a record that is not an object, a missing key, a duplicate
key, a value of the wrong JSON type (``label`` must be ``true`` or ``false``, not ``"true"``
nor ``1``), an unknown prompt, an unknown word (never dropped), an empty completion, one
longer than T tokens, or words after the end token; a file without records is an error too
(``line`` is then None). Choices for the lenient cases:

- a UTF-8 byte-order mark at the very start of the file is accepted and skipped (editors on
  Windows write one); anywhere else it is invalid JSON;
- lines holding only whitespace are skipped (a trailing newline, a blank line between
  records) but still counted, so line numbers match an editor's;
- ``\\r\\n`` line endings are accepted;
- extra keys are ignored: TRL datasets often carry more columns (ids, scores, sources).

A file that cannot be opened raises the usual ``OSError``; what is not a regular file (a
FIFO, ``/dev/zero``) or is over :data:`~minikto.data.files.MAX_DATA_BYTES` raises
``ValueError`` before anything is read (:func:`~minikto.data.files.open_user_file`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np

from .._brief import brief
from .atomic import atomic_write
from .feedback import PairedDataset, UnpairedDataset
from .files import MAX_DATA_BYTES, open_user_file
from .responses import check_responses
from .toy import ToyTask

__all__ = [
    "DatasetFormatError",
    "read_paired",
    "read_unpaired",
    "write_paired",
    "write_unpaired",
]

#: Reads one field's text: (path, line, record, key) -> str, or a DatasetFormatError.
_TextReader = Callable[[Any, int, dict, str], str]

_UNPAIRED_KEYS = ("prompt", "completion", "label")
_PAIRED_KEYS = ("prompt", "chosen", "rejected")
_BOM = b"\xef\xbb\xbf"


class DatasetFormatError(ValueError):
    """A dataset file with bad content.

    Attributes
    ----------
    path : str
        The file.
    line : int or None
        The 1-based line number of the bad record; None for a problem of the whole file.
    problem : str
        What is wrong, without the location.
    """

    def __init__(self, path: str | os.PathLike[str], line: int | None, problem: str) -> None:
        self.path = os.fspath(path)
        self.line = line
        self.problem = problem
        where = f"{self.path}, line {line}" if line is not None else self.path
        super().__init__(f"{where}: {problem}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.path, self.line, self.problem))


# ------------------------------------------------------------------------------------------
# Public API


def write_unpaired(path: str | os.PathLike[str], dataset: UnpairedDataset, task: ToyTask) -> None:
    """Write an unpaired dataset as JSON Lines ``{"prompt", "completion", "label"}``, atomically.

    Raises
    ------
    ValueError
        If the dataset is empty or does not fit the task (ids out of range, too long).
    """
    if not isinstance(dataset, UnpairedDataset):
        raise TypeError(f"dataset: expected an UnpairedDataset; got {type(dataset).__name__}")
    _check_fits(task, dataset.prompts, responses=dataset.responses)
    records = (
        {"prompt": task.prompts[x], "completion": _completion(task, y), "label": bool(label)}
        for x, y, label in zip(dataset.prompts, dataset.responses, dataset.desirable,
                               strict=True)
    )
    _atomic_write(path, records)


def write_paired(path: str | os.PathLike[str], dataset: PairedDataset, task: ToyTask) -> None:
    """Write a paired dataset as JSON Lines ``{"prompt", "chosen", "rejected"}``, atomically.

    Raises
    ------
    ValueError
        If the dataset is empty or does not fit the task.
    """
    if not isinstance(dataset, PairedDataset):
        raise TypeError(f"dataset: expected a PairedDataset; got {type(dataset).__name__}")
    _check_fits(task, dataset.prompts, chosen=dataset.chosen, rejected=dataset.rejected)
    records = (
        {"prompt": task.prompts[x], "chosen": _completion(task, c),
         "rejected": _completion(task, r)}
        for x, c, r in zip(dataset.prompts, dataset.chosen, dataset.rejected, strict=True)
    )
    _atomic_write(path, records)


def read_unpaired(path: str | os.PathLike[str], task: ToyTask) -> UnpairedDataset:
    """Read a JSON Lines file of ``{"prompt", "completion", "label"}`` records.

    Returns
    -------
    UnpairedDataset
        Responses of width ``task.max_length``, in file order.

    Raises
    ------
    DatasetFormatError
        On any bad content (see the module docstring), naming the file and the line.
    """
    _check_task(task)
    return _unpaired(path, _records(path, _UNPAIRED_KEYS), task, _string)


def read_paired(path: str | os.PathLike[str], task: ToyTask) -> PairedDataset:
    """Read a JSON Lines file of ``{"prompt", "chosen", "rejected"}`` records.

    Raises
    ------
    DatasetFormatError
        On any bad content (see the module docstring), naming the file and the line.
    """
    _check_task(task)
    return _paired(path, _records(path, _PAIRED_KEYS), task, _string)


def _unpaired(path: str | os.PathLike[str], records: Iterable[tuple[int, dict]], task: ToyTask,
              text: _TextReader) -> UnpairedDataset:
    """Unpaired records -> a dataset; ``text(path, line, record, key)`` reads each field."""
    prompts, responses, labels = [], [], []
    for line, record in records:
        prompts.append(_prompt(path, line, text(path, line, record, "prompt"), task))
        responses.append(_response(path, line, record, "completion", task, text))
        label = record["label"]
        if not isinstance(label, bool):
            raise DatasetFormatError(
                path, line, f"label: expected a JSON boolean true or false; got {_kind(label)}"
            )
        labels.append(label)
    return UnpairedDataset(np.array(prompts), np.stack(responses), np.array(labels, dtype=bool))


def _paired(path: str | os.PathLike[str], records: Iterable[tuple[int, dict]], task: ToyTask,
            text: _TextReader) -> PairedDataset:
    """Paired records -> a dataset; ``text(path, line, record, key)`` reads each field."""
    prompts, chosen, rejected = [], [], []
    for line, record in records:
        prompts.append(_prompt(path, line, text(path, line, record, "prompt"), task))
        chosen.append(_response(path, line, record, "chosen", task, text))
        rejected.append(_response(path, line, record, "rejected", task, text))
    return PairedDataset(np.array(prompts), np.stack(chosen), np.stack(rejected))


# ------------------------------------------------------------------------------------------
# Reading: lines -> JSON objects -> fields


def _records(path: str | os.PathLike[str], keys: tuple[str, ...]) -> Iterator[tuple[int, dict]]:
    """Yield (line number, JSON object holding ``keys``) for every non-blank line."""
    count = size = 0
    with open_user_file(path, max_bytes=MAX_DATA_BYTES) as f:
        for number, raw in enumerate(f, start=1):
            size += len(raw)
            if size > MAX_DATA_BYTES:
                raise DatasetFormatError(path, number, f"the file grew past {MAX_DATA_BYTES} "
                                         "bytes while it was read")
            complete = raw.endswith(b"\n")  # False only on a last line without a newline
            raw = raw.rstrip(b"\n").removesuffix(b"\r")
            if number == 1:
                raw = raw.removeprefix(_BOM)
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise DatasetFormatError(
                    path, number, f"invalid UTF-8 (byte {err.start + 1} of the line is "
                    f"0x{raw[err.start]:02x}); save the file as UTF-8"
                ) from None
            if not text.strip():
                continue
            record = _parse(path, number, text, complete)
            _require_keys(path, number, record, keys)
            count += 1
            yield number, record
    if count == 0:
        raise DatasetFormatError(path, None, "no records: the file is empty or holds only "
                                 "blank lines")


def _require_keys(path: str | os.PathLike[str], number: int, record: dict,
                  keys: tuple[str, ...]) -> None:
    missing = [k for k in keys if k not in record]
    if missing:
        raise DatasetFormatError(
            path, number, f"missing key {missing[0]!r}: expected the keys "
            f"{', '.join(map(repr, keys))}; got {', '.join(map(repr, record)) or 'none'}"
        )


class _DuplicateKey(ValueError):
    pass


def _object_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def _parse(path: str | os.PathLike[str], number: int, text: str, complete: bool) -> dict:
    """One line of JSON text -> a dict, or a DatasetFormatError saying why not."""
    try:
        value = json.loads(text, object_pairs_hook=_object_without_duplicates)
    except _DuplicateKey as err:
        raise DatasetFormatError(path, number, f"duplicate key {brief(err.args[0])}") from None
    except json.JSONDecodeError as err:
        stripped = len(text.rstrip())
        if err.pos >= stripped or err.msg.startswith("Unterminated string"):
            cut = "" if complete else " (the file ends without a newline: was it cut short?)"
            problem = f"truncated JSON: the line ends before the record is complete{cut}"
        else:
            problem = f"invalid JSON: {err.msg} at column {err.colno}"
        raise DatasetFormatError(path, number, problem) from None
    except (ValueError, RecursionError) as err:  # e.g. nesting too deep, an enormous integer
        raise DatasetFormatError(path, number, f"invalid JSON: {err}") from None
    if not isinstance(value, dict):
        raise DatasetFormatError(
            path, number, f"expected a JSON object {{...}} per line; got {_kind(value)}"
        )
    return value


def _prompt(path: str | os.PathLike[str], number: int, value: Any, task: ToyTask) -> int:
    if not isinstance(value, str):
        raise DatasetFormatError(
            path, number, f"prompt: expected a JSON string; got {_kind(value)}"
        )
    if value not in task.prompts:
        raise DatasetFormatError(
            path, number,
            f"prompt: expected one of {list(task.prompts)}; got unknown prompt {_short(value)}",
        )
    return task.prompts.index(value)


def _response(path: str | os.PathLike[str], number: int, record: dict, key: str,
              task: ToyTask, text: _TextReader) -> np.ndarray:
    value = text(path, number, record, key)
    try:
        return task.encode_response(value, name=key)
    except ValueError as err:  # unknown word, empty, longer than T, words after the end
        raise DatasetFormatError(path, number, str(err)) from None


def _string(path: str | os.PathLike[str], number: int, record: dict, key: str) -> str:
    """A field's text, which must be a JSON string."""
    value = record[key]
    if not isinstance(value, str):
        raise DatasetFormatError(path, number, f"{key}: expected a JSON string; got {_kind(value)}")
    return value


def _completion(task: ToyTask, ids: np.ndarray) -> str:
    """A response as written to a file: its words after one leading space (module docstring)."""
    return " " + task.decode(ids)


def _kind(value: Any) -> str:
    """A JSON value described for an error message: ``string 'true'``, ``number 1``..."""
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if value is None:
        return "null"
    if isinstance(value, (int, float)):
        return f"number {value!r}"
    if isinstance(value, str):
        return f"string {_short(value)}"
    if isinstance(value, list):
        return f"an array of {len(value)} item{'' if len(value) == 1 else 's'}"
    return "an object"


def _short(text: str, limit: int = 60) -> str:
    """``repr`` of a string, cut to ``limit`` characters for an error message."""
    return repr(text) if len(text) <= limit else repr(text[: limit - 3] + "...")


# ------------------------------------------------------------------------------------------
# Writing


def _check_task(task: Any) -> None:
    if not isinstance(task, ToyTask):
        raise TypeError(f"task: expected a ToyTask; got {type(task).__name__}")


def _check_fits(task: ToyTask, prompts: np.ndarray, **responses: np.ndarray) -> None:
    """Refuse, before any file is touched, a dataset the task cannot turn into text."""
    _check_task(task)
    if prompts.shape[0] == 0:
        raise ValueError("dataset: expected at least one example; got an empty dataset "
                         "(an empty file could not be read back)")
    if prompts.max() >= task.num_prompts:
        raise ValueError(f"dataset.prompts: expected ids in [0, {task.num_prompts}); "
                         f"got {int(prompts.max())}")
    for name, arr in responses.items():
        check_responses(arr, f"dataset.{name}", vocab_size=task.vocab_size,
                        eos_token=task.eos_token, max_length=task.max_length)


def _atomic_write(path: str | os.PathLike[str], records: Iterable[dict]) -> None:
    """Write one JSON object per line, atomically (:func:`minikto.data.atomic.atomic_write`)."""
    with atomic_write(path, "w", encoding="utf-8", newline="\n") as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False))
            f.write("\n")
