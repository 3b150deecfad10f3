"""Specification of the JSON Lines files: TRL's formats, atomic writes, strict reads."""

from __future__ import annotations

import json
import os
import pickle

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import minikto.data.jsonl as jsonl
from minikto.data.feedback import UnpairedDataset, sample_paired, sample_unpaired
from minikto.data.jsonl import (
    DatasetFormatError,
    read_paired,
    read_unpaired,
    write_paired,
    write_unpaired,
)
from minikto.data.toy import default_task

TASK = default_task()
GOOD = b'{"prompt": "greet a friend", "completion": "hello friend .", "label": true}\n'
GOOD_PAIR = b'{"prompt": "greet a friend", "chosen": "hello friend .", "rejected": "whatever ."}\n'


def write_bytes(tmp_path, content: bytes, name: str = "data.jsonl"):
    path = tmp_path / name
    path.write_bytes(content)
    return path


# ------------------------------------------------------------------------------------------
# Round trips and the format


def test_unpaired_write_then_read_gives_back_the_dataset(tmp_path):
    data = sample_unpaired(TASK, 200, seed=0, label_noise=0.1)
    write_unpaired(tmp_path / "kto.jsonl", data, TASK)
    back = read_unpaired(tmp_path / "kto.jsonl", TASK)
    np.testing.assert_array_equal(back.prompts, data.prompts)
    np.testing.assert_array_equal(back.responses, data.responses)
    np.testing.assert_array_equal(back.desirable, data.desirable)


def test_paired_write_then_read_gives_back_the_dataset(tmp_path):
    data = sample_paired(TASK, 100, seed=1)
    write_paired(str(tmp_path / "dpo.jsonl"), data, TASK)
    back = read_paired(str(tmp_path / "dpo.jsonl"), TASK)
    np.testing.assert_array_equal(back.prompts, data.prompts)
    np.testing.assert_array_equal(back.chosen, data.chosen)
    np.testing.assert_array_equal(back.rejected, data.rejected)


def test_written_records_are_trl_prompt_completion_label_objects(tmp_path):
    data = UnpairedDataset(np.array([3, 0]), np.array([[0, 5, 11], [2, 3, 4]]),
                           np.array([True, False]))
    write_unpaired(tmp_path / "kto.jsonl", data, TASK)
    lines = (tmp_path / "kto.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == [
        {"prompt": "greet a friend", "completion": " hello friend .", "label": True},
        {"prompt": "praise the food", "completion": " great tasty food", "label": False},
    ]


def test_written_pairs_are_trl_prompt_chosen_rejected_objects(tmp_path):
    path = write_bytes(tmp_path, GOOD_PAIR)
    write_paired(path, read_paired(path, TASK), TASK)
    assert path.read_bytes() == (
        b'{"prompt": "greet a friend", "chosen": " hello friend .", "rejected": " whatever ."}\n'
    )


# ------------------------------------------------------------------------------------------
# Lenient cases, as documented


def test_a_utf8_byte_order_mark_at_the_start_is_accepted(tmp_path):
    assert len(read_unpaired(write_bytes(tmp_path, b"\xef\xbb\xbf" + GOOD + GOOD), TASK)) == 2


def test_blank_lines_are_skipped_but_counted(tmp_path):
    path = write_bytes(tmp_path, GOOD + b"\n   \n" + GOOD + b'{"prompt": 1}\n')
    with pytest.raises(DatasetFormatError) as info:
        read_unpaired(path, TASK)
    assert info.value.line == 5


def test_crlf_line_endings_and_a_missing_final_newline_are_accepted(tmp_path):
    path = write_bytes(tmp_path, GOOD.replace(b"\n", b"\r\n") + GOOD.rstrip(b"\n"))
    assert len(read_unpaired(path, TASK)) == 2


def test_extra_keys_are_ignored(tmp_path):
    extra = b'{"prompt": "greet a friend", "completion": "hello .", "label": false, "id": 7}\n'
    data = read_unpaired(write_bytes(tmp_path, extra), TASK)
    assert data.desirable.tolist() == [False]


# ------------------------------------------------------------------------------------------
# Malformed files: a DatasetFormatError naming the file and the line


def record(prompt="greet a friend", completion="hello friend .", label=True) -> bytes:
    return json.dumps({"prompt": prompt, "completion": completion, "label": label}).encode()


UNPAIRED_CASES = {
    "invalid JSON": (b'{"prompt": "greet a friend" "completion": "hello ."}', "invalid JSON"),
    "truncated line": (b'{"prompt": "greet a friend", "compl', "truncated JSON"),
    "truncated after a value": (b'{"prompt": "greet a friend"', "truncated JSON"),
    "two objects": (GOOD.rstrip() + GOOD.rstrip(), "invalid JSON"),
    "not an object": (b'["greet a friend", "hello .", true]', "expected a JSON object"),
    "a bare string": (b'"hello"', "expected a JSON object"),
    "missing key": (b'{"prompt": "greet a friend", "completion": "hello ."}',
                    "missing key 'label'"),
    "duplicate key": (b'{"prompt": "greet a friend", "prompt": "x", "completion": "hello .", '
                      b'"label": true}', "duplicate key 'prompt'"),
    "label as a string": (record(label="true"), "label: expected a JSON boolean"),
    "label as a number": (record(label=1), "label: expected a JSON boolean true or false; "
                          "got number 1"),
    "label null": (record(label=None), "got null"),
    "prompt not a string": (record(prompt=3), "prompt: expected a JSON string"),
    "conversational prompt": (record(prompt=[{"role": "user", "content": "hi"}]),
                              "prompt: expected a JSON string; got an array of 1 item"),
    "completion not a string": (record(completion=["hello", "."]),
                                "completion: expected a JSON string"),
    "unknown prompt": (record(prompt="insult a friend"), "unknown prompt 'insult a friend'"),
    "unknown word": (record(completion="hello yummy ."), "unknown word 'yummy'"),
    "empty completion": (record(completion=""), "at least one word"),
    "blank completion": (record(completion="   "), "at least one word"),
    "completion longer than T": (record(completion="hello friend great ."), "at most T = 3"),
    "words after the end": (record(completion="hello . friend"), "after the end token '.'"),
    "invalid UTF-8": (b'{"prompt": "greet a friend", "completion": "hello \xff", "label": true}',
                      "invalid UTF-8"),
    "deep nesting": (b"[" * 100_000, "invalid JSON"),
    "enormous integer": (b'{"prompt": ' + b"9" * 5000 + b"}", "invalid JSON"),
}


@pytest.mark.parametrize("case", list(UNPAIRED_CASES))
@pytest.mark.parametrize("line", [1, 3])
def test_a_malformed_unpaired_line_raises_naming_file_and_line(tmp_path, case, line):
    bad, message = UNPAIRED_CASES[case]
    path = write_bytes(tmp_path, GOOD * (line - 1) + bad + b"\n" + GOOD)
    with pytest.raises(DatasetFormatError, match=message) as info:
        read_unpaired(path, TASK)
    error = info.value
    assert error.line == line and error.path == str(path)
    assert str(error).startswith(f"{path}, line {line}: ")


def test_a_byte_order_mark_after_the_first_line_is_invalid_json(tmp_path):
    path = write_bytes(tmp_path, GOOD + b"\xef\xbb\xbf" + GOOD)
    with pytest.raises(DatasetFormatError, match="line 2: invalid JSON"):
        read_unpaired(path, TASK)


def test_a_truncated_last_line_says_the_file_may_be_cut_short(tmp_path):
    path = write_bytes(tmp_path, GOOD + b'{"prompt": "greet a friend", "completion": "hel')
    with pytest.raises(DatasetFormatError, match="line 2: truncated JSON.*cut short"):
        read_unpaired(path, TASK)


@pytest.mark.parametrize(
    ("bad", "message"),
    [(b'{"prompt": "greet a friend", "chosen": "hello ."}', "missing key 'rejected'"),
     (b'{"prompt": "greet a friend", "chosen": "hello .", "rejected": "meh ."}',
      "rejected: expected words of the vocabulary"),
     (b'{"prompt": "greet a friend", "chosen": 1, "rejected": "hello ."}',
      "chosen: expected a JSON string")],
)
def test_a_malformed_paired_line_raises_naming_file_and_line(tmp_path, bad, message):
    path = write_bytes(tmp_path, GOOD_PAIR + bad + b"\n")
    with pytest.raises(DatasetFormatError, match=f"line 2: {message}"):
        read_paired(path, TASK)


@pytest.mark.parametrize("content", [b"", b"\n\n  \n", b"\xef\xbb\xbf"])
def test_a_file_without_records_is_an_error_of_the_whole_file(tmp_path, content):
    path = write_bytes(tmp_path, content)
    with pytest.raises(DatasetFormatError, match="no records") as info:
        read_unpaired(path, TASK)
    assert info.value.line is None and str(info.value).startswith(str(path))


def test_dataset_format_error_is_a_value_error_that_survives_pickling():
    error = DatasetFormatError("a.jsonl", 3, "missing key 'label'")
    assert isinstance(error, ValueError)
    back = pickle.loads(pickle.dumps(error))
    assert (back.path, back.line, str(back)) == ("a.jsonl", 3, str(error))


# random bytes, and files glued from pieces of valid and invalid records
FILE_CONTENTS = st.binary(max_size=200) | st.lists(st.sampled_from(
    [GOOD, GOOD_PAIR, b"{", b"}", b'"label": ', b"true", b"\n", b"\xff", b"\xef\xbb\xbf",
     b'"completion": "hello', b" .", b'"prompt": "greet a friend", ', b"[", b"null"]
), max_size=12).map(b"".join)


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(FILE_CONTENTS)
def test_reading_any_bytes_returns_a_dataset_or_raises_dataset_format_error(tmp_path, content):
    path = write_bytes(tmp_path, content, "fuzz.jsonl")
    for reader in (read_unpaired, read_paired):
        try:
            reader(path, TASK)
        except DatasetFormatError:
            pass


# ------------------------------------------------------------------------------------------
# Atomic writes


def leftovers(directory) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name != "kto.jsonl")


def test_a_write_leaves_no_temporary_file_and_replaces_the_old_content(tmp_path):
    path = write_bytes(tmp_path, b"old\n", "kto.jsonl")
    write_unpaired(path, sample_unpaired(TASK, 20, seed=2), TASK)
    assert len(read_unpaired(path, TASK)) == 20
    assert leftovers(tmp_path) == []


def test_a_failure_while_writing_keeps_the_previous_file_and_removes_the_temporary(
    tmp_path, monkeypatch
):
    path = write_bytes(tmp_path, GOOD, "kto.jsonl")
    calls = []

    def failing_dumps(obj, **kwargs):
        calls.append(obj)
        if len(calls) == 5:
            raise RuntimeError("disk full")
        return json.JSONEncoder(**kwargs).encode(obj)

    monkeypatch.setattr(jsonl.json, "dumps", failing_dumps)
    with pytest.raises(RuntimeError, match="disk full"):
        write_unpaired(path, sample_unpaired(TASK, 20, seed=3), TASK)
    assert path.read_bytes() == GOOD
    assert leftovers(tmp_path) == []


def test_a_failing_rename_keeps_the_previous_file_and_removes_the_temporary(
    tmp_path, monkeypatch
):
    path = write_bytes(tmp_path, GOOD, "kto.jsonl")

    def failing_replace(src, dst):
        raise OSError("rename refused")

    monkeypatch.setattr(jsonl.os, "replace", failing_replace)
    with pytest.raises(OSError, match="rename refused"):
        write_unpaired(path, sample_unpaired(TASK, 20, seed=4), TASK)
    assert path.read_bytes() == GOOD
    assert leftovers(tmp_path) == []


def test_a_write_keeps_the_permissions_of_the_file_it_replaces(tmp_path):
    path = write_bytes(tmp_path, GOOD, "kto.jsonl")
    os.chmod(path, 0o640)
    write_unpaired(path, sample_unpaired(TASK, 5, seed=5), TASK)
    assert os.stat(path).st_mode & 0o777 == 0o640


@pytest.mark.parametrize(
    ("data", "message"),
    [(UnpairedDataset(np.zeros(0, np.int64), np.zeros((0, 3), np.int64), np.zeros(0, bool)),
      "at least one example"),
     (UnpairedDataset(np.array([7]), np.array([[0, 11, -1]]), np.array([True])),
      r"dataset.prompts: expected ids in \[0, 5\)"),
     (UnpairedDataset(np.array([0]), np.array([[0, 1, 2, 3]]), np.array([True])),
      "at most T = 3")],
)
def test_a_dataset_that_does_not_fit_the_task_is_refused_before_the_file_is_touched(
    tmp_path, data, message
):
    path = write_bytes(tmp_path, GOOD, "kto.jsonl")
    with pytest.raises(ValueError, match=message):
        write_unpaired(path, data, TASK)
    assert path.read_bytes() == GOOD
    assert leftovers(tmp_path) == []
