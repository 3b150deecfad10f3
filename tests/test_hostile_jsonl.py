"""Hostile JSON Lines files: every damaged record is reported at its line, as a
DatasetFormatError (the catalogue of bad inputs: docs/HOSTILE_INPUT.md)."""

from __future__ import annotations

import json

import pytest
from conftest import examples
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from minikto.data.jsonl import (
    DatasetFormatError,
    read_paired,
    read_unpaired,
)
from minikto.data.toy import default_task

pytestmark = pytest.mark.filterwarnings("ignore::minikto.training.config.WeightBalanceWarning")


TASK = default_task()


def fuzz(n: int) -> settings:
    """``n`` examples under the "ci" profile (see conftest); tmp_path is shared by them."""
    return settings(max_examples=examples(n),
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])


UNPAIRED = {"prompt": "greet a friend", "completion": "hello friend .", "label": True}


PAIRED = {"prompt": "greet a friend", "chosen": "hello friend .", "rejected": "whatever ."}


READERS = {"unpaired": (read_unpaired, UNPAIRED), "paired": (read_paired, PAIRED)}


def line(record: dict) -> bytes:
    return json.dumps(record).encode("utf-8")


def write(tmp_path, content: bytes):
    path = tmp_path / "data.jsonl"
    path.write_bytes(content)
    return path


def around(bad: bytes, before: int, after: int, record: dict) -> bytes:
    """``before`` good lines, the bad line, ``after`` good lines."""
    good = line(record) + b"\n"
    return good * before + bad + b"\n" + good * after


def read_fails_at(tmp_path, kind: str, content: bytes, number: int) -> DatasetFormatError:
    reader, _ = READERS[kind]
    path = write(tmp_path, content)
    with pytest.raises(DatasetFormatError) as info:
        reader(path, TASK)
    error = info.value
    assert error.line == number, str(error)
    assert error.path == str(path) and str(error).startswith(f"{path}, line {number}: ")
    return error


@fuzz(60)
@given(kind=st.sampled_from(list(READERS)), data=st.data(), before=st.integers(0, 3),
       after=st.integers(0, 2))
def test_a_record_cut_at_any_byte_is_reported_at_its_line(tmp_path, kind, data, before, after):
    record = line(READERS[kind][1])
    cut = record[: data.draw(st.integers(1, len(record) - 1))]
    content = around(cut, before, after, READERS[kind][1])
    if after == 0:
        content = content[:-1]  # the file itself ends inside the record, without a newline
    error = read_fails_at(tmp_path, kind, content, before + 1)
    assert error.problem.startswith(("truncated JSON", "invalid JSON"))
    if after == 0 and error.problem.startswith("truncated"):
        assert "cut short" in error.problem


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner,
                                                                  max_size=3),
    max_leaves=6,
)


TEXTS = st.sampled_from(TASK.prompts) | st.lists(st.sampled_from(TASK.vocab), max_size=4).map(
    " ".join
)


def accepted(key: str, value) -> bool:
    """What the format accepts for ``key`` (module docstring of minikto.data.jsonl)."""
    if key == "label":
        return isinstance(value, bool)
    if not isinstance(value, str):
        return False
    if key == "prompt":
        return value in TASK.prompts
    try:
        TASK.encode_response(value)
    except ValueError:
        return False
    return True


@fuzz(100)
@given(kind=st.sampled_from(list(READERS)), data=st.data(), value=JSON_VALUES | TEXTS,
       before=st.integers(0, 3))
def test_any_json_value_in_place_of_a_field_is_accepted_only_if_valid_else_reported_at_its_line(
    tmp_path, kind, data, value, before
):
    reader, record = READERS[kind]
    key = data.draw(st.sampled_from(list(record)))
    bad = line({**record, key: value})
    if accepted(key, value):
        dataset = reader(write(tmp_path, around(bad, before, 1, record)), TASK)
        assert len(dataset) == before + 2
    else:
        error = read_fails_at(tmp_path, kind, around(bad, before, 1, record), before + 1)
        assert error.problem.startswith(f"{key}: "), error.problem


@fuzz(40)
@given(kind=st.sampled_from(list(READERS)), data=st.data(), before=st.integers(0, 3))
def test_a_record_missing_any_of_its_keys_is_reported_at_its_line(tmp_path, kind, data, before):
    record = READERS[kind][1]
    drop = data.draw(st.sets(st.sampled_from(list(record)), min_size=1))
    bad = line({k: v for k, v in record.items() if k not in drop})
    error = read_fails_at(tmp_path, kind, around(bad, before, 2, record), before + 1)
    first_missing = next(k for k in record if k in drop)
    assert error.problem.startswith(f"missing key {first_missing!r}")


@fuzz(60)
@given(kind=st.sampled_from(list(READERS)), data=st.data(), byte=st.integers(0x80, 0xFF),
       before=st.integers(0, 3))
def test_a_byte_that_is_not_utf8_is_reported_at_its_line_and_position(
    tmp_path, kind, data, byte, before
):
    record = line(READERS[kind][1])
    at = data.draw(st.integers(0, len(record)))
    bad = record[:at] + bytes([byte]) + record[at:]  # the records are ASCII: never valid
    error = read_fails_at(tmp_path, kind, around(bad, before, 1, READERS[kind][1]), before + 1)
    assert error.problem.startswith(f"invalid UTF-8 (byte {at + 1} of the line is 0x{byte:02x})")


@fuzz(100)
@given(kind=st.sampled_from(list(READERS)), junk=st.binary(max_size=300),
       before=st.integers(0, 3))
def test_random_bytes_after_good_lines_give_a_dataset_or_an_error_at_or_after_their_line(
    tmp_path, kind, junk, before
):
    reader, record = READERS[kind]
    path = write(tmp_path, (line(record) + b"\n") * before + junk)
    try:
        reader(path, TASK)
    except DatasetFormatError as error:
        if error.line is None:  # only a file without any record has no line
            assert before == 0
        else:
            assert before + 1 <= error.line <= before + 1 + junk.count(b"\n")


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [("completion", "hello " * 200_000 + ".", "completion: expected at most T = 3"),
     ("completion", "yummy" * 200_000, "completion: expected words of the vocabulary"),
     ("completion", "hello ." + " " * 1_000_000 + "friend", "completion: expected nothing after"),
     ("prompt", "greet " * 200_000, "prompt: expected one of"),
     ("label", "true" * 200_000, "label: expected a JSON boolean")],
    ids=["too many words", "an unknown word", "a word after the end", "an unknown prompt",
         "a label string"],
)
def test_a_megabyte_line_gets_a_short_error_message_at_its_line(tmp_path, field, value, problem):
    bad = line({**UNPAIRED, field: value})
    error = read_fails_at(tmp_path, "unpaired", around(bad, 2, 1, UNPAIRED), 3)
    assert error.problem.startswith(problem) and len(str(error)) < 600


def test_a_megabyte_extra_field_is_ignored_like_any_extra_key(tmp_path):
    path = write(tmp_path, line({**UNPAIRED, "notes": "x" * 5_000_000}) + b"\n")
    assert read_unpaired(path, TASK).desirable.tolist() == [True]


def test_the_line_number_is_exact_after_ten_thousand_records(tmp_path):
    content = around(b'{"prompt": "greet a friend"}', 10_000, 0, UNPAIRED)
    assert read_fails_at(tmp_path, "unpaired", content, 10_001).problem.startswith("missing key")


@pytest.mark.parametrize(
    ("content", "number", "problem"),
    [(b"\x00" * 10, 1, "invalid JSON"),
     (line(UNPAIRED) + b"\r" + line(UNPAIRED), 1, "invalid JSON"),  # a lone \r ends no line
     (b"\r\n" + line(PAIRED), 2, "missing key 'completion'"),  # a paired file, read unpaired
     (b'{"prompt": NaN, "completion": "hello .", "label": true}', 1, "prompt: expected a JSON "
      "string; got number nan"),
     (b'{"prompt": "greet a friend", "completion": "hello .", "label": 1e999}', 1,
      "label: expected a JSON boolean true or false; got number inf")],
)
def test_odd_bytes_and_json_extensions_are_reported_at_their_line(tmp_path, content, number,
                                                                   problem):
    error = read_fails_at(tmp_path, "unpaired", content, number)
    assert error.problem.startswith(problem)


def test_a_path_that_cannot_be_read_raises_the_usual_os_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_unpaired(tmp_path / "missing.jsonl", TASK)
    with pytest.raises(IsADirectoryError):
        read_unpaired(tmp_path, TASK)
    with pytest.raises(TypeError, match="task: expected a ToyTask; got dict"):
        read_unpaired(write(tmp_path, line(UNPAIRED)), {"vocab": []})
