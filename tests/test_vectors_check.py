"""``minikto vectors`` against hostile files and flags: strict checks, no silent replacement.

A vectors file without cases fails; malformed cases get a line naming the case; string
labels are refused, never cast; ``--out`` with ``--check`` is refused; ``--out`` never
replaces an existing file without ``--overwrite``; FIFOs and devices are refused before a
byte is read, as ``--check`` and as ``--data``.
"""

from __future__ import annotations

import copy
import json
import os
import threading

import pytest

from minikto.data.files import open_user_file, read_user_bytes
from minikto.tools.cli import main
from minikto.tools.vectors import make_vectors, write_vectors
from minikto.tools.vectors_check import check_vectors

VECTORS = make_vectors()


def tampered(change):
    vectors = copy.deepcopy(VECTORS)
    change(vectors)
    return vectors


def case(vectors, name):
    return next(c for c in vectors["cases"] if c["name"] == name)


def run(capsys, *argv):
    try:
        code = main(list(argv))
    except SystemExit as stop:
        code = stop.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# ------------------------------------------------------------------------------------------
# check_vectors: files without cases, malformed cases, string labels


@pytest.mark.parametrize(
    ("cases", "got"),
    [([], "a list of 0 items"), (None, "no key 'cases'"), ({"a": 1}, "an object"),
     ("all", "string 'all'")],
)
def test_a_file_without_cases_fails(cases, got):
    vectors = {key: value for key, value in VECTORS.items() if key != "cases"}
    if cases is not None:
        vectors["cases"] = cases
    assert check_vectors(vectors) == [
        f"file: expected a non-empty list of cases under 'cases'; got {got}"
    ]


def _set(name, path, value):
    def change(vectors):
        target = case(vectors, name)
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    return change


@pytest.mark.parametrize(
    ("change", "line"),
    [
        (_set("kto_mixed", ["inputs", "desirable"], ["true"] * 8),
         "kto_mixed: inputs.desirable: expected a list of JSON booleans true/false; got an "
         "item string 'true'"),
        (_set("kto_mixed", ["inputs", "desirable"], [1, 0, 1, 1, 0, 0, 1, 0]),
         "kto_mixed: inputs.desirable: expected a list of JSON booleans true/false; got an "
         "item number 1"),
        (_set("kto_mixed", ["inputs", "beta"], "0.1"),
         "kto_mixed: inputs.beta: expected a finite JSON number; got string '0.1'"),
        (_set("kto_mixed", ["inputs", "beta"], True),
         "kto_mixed: inputs.beta: expected a finite JSON number; got boolean true"),
        (_set("kto_mixed", ["inputs", "z0"], 10**400),
         "kto_mixed: inputs.z0: expected a finite JSON number; got a number too large"),
        (_set("kto_mixed", ["inputs", "policy_logps"], [-1.0, "x"]),
         "kto_mixed: inputs.policy_logps: expected a list of finite JSON numbers; got an "
         "item string 'x'"),
        (_set("kto_mixed", ["inputs", "policy_logps"], [-1.0] * 3),
         "kto_mixed: inputs: expected lists of one length B; got lengths"),
        (_set("kto_mixed", ["inputs", "policy_logps"], [[-1.0]] * 8),
         "kto_mixed: inputs.policy_logps: expected a 1-d list; got a 2-d one"),
        (_set("kto_tokens_summed", ["inputs", "completion_mask"], [[True]] * 4),
         "kto_tokens_summed: inputs: expected token arrays of one shape (B, L)"),
        (_set("kto_tokens_summed", ["inputs", "policy_token_logps"], [[-1.0], [-1.0, -2.0]]),
         "kto_tokens_summed: inputs.policy_token_logps: expected rows of one length"),
        (_set("kto_mixed", ["inputs", "policy_logps"], []),
         "kto_mixed: inputs.policy_logps: expected a non-empty list of finite JSON numbers; "
         "got a list of 0 items"),
        (lambda v: case(v, "kto_mixed")["inputs"].pop("beta"),
         "kto_mixed: inputs: missing key 'beta'"),
        (_set("kto_mixed", ["inputs"], [1, 2]),
         "kto_mixed: inputs: expected a JSON object; got a list of 2 items"),
        (_set("kto_mixed", ["outputs", "loss"], "0.5"),
         "kto_mixed: outputs.loss: expected a non-empty list of finite JSON numbers; got "
         "string '0.5'"),
        (_set("kto_mixed", ["function"], None),
         "kto_mixed: function: expected one of ['dpo_loss', 'kl_estimate', 'kto_loss', "
         "'kto_loss_from_token_logps']; got null"),
        (lambda v: v["cases"].__setitem__(3, "kto"),
         "case 3 (no name): expected a JSON object; got string 'kto'"),
        (lambda v: v["cases"][3].pop("name"),
         "case 3 (no name): name: expected a non-empty string; got null"),
        (_set("kto_mixed", ["name"], "kl_positive"),
         "kl_positive: the name of an earlier case; every name must be unique"),
        (_set("kto_mixed", ["inputs", "beta"], -1.0),
         "kto_mixed: cannot recompute (ValueError: beta: expected a number > 0"),
    ],
    ids=lambda v: v if isinstance(v, str) and len(v) < 20 else None,
)
def test_a_malformed_case_gives_one_line_naming_the_case(change, line):
    failures = check_vectors(tampered(change))
    assert any(f.startswith(line) for f in failures), failures
    assert all("Traceback" not in f for f in failures)


def test_string_labels_are_never_cast_to_true():
    def strings(vectors):
        inputs = case(vectors, "kto_only_undesirable")["inputs"]
        inputs["desirable"] = ["false"] * len(inputs["desirable"])

    (failure,) = check_vectors(tampered(strings))
    assert failure.startswith("kto_only_undesirable: inputs.desirable: expected a list of "
                              "JSON booleans")


def test_a_wrong_value_in_a_token_array_is_named_by_row_and_column():
    def nudge(vectors):
        case(vectors, "kto_tokens_summed")["outputs"]["grad_policy_token_logps"][2][1] *= 1.01

    (failure,) = check_vectors(tampered(nudge))
    assert failure.startswith("kto_tokens_summed: grad_policy_token_logps[2][1]: stored ")


# ------------------------------------------------------------------------------------------
# The command line: --out never replaces silently, --out with --check is refused


def test_vectors_out_refuses_an_existing_file_unless_overwrite(tmp_path, capsys):
    path = tmp_path / "mine.json"
    path.write_text("my own notes")
    code, _, err = run(capsys, "vectors", "--out", str(path))
    assert code == 2 and f"{path} exists; pass --overwrite to replace it" in err
    assert path.read_text() == "my own notes"
    code, out, _ = run(capsys, "vectors", "--out", str(path), "--overwrite")
    assert code == 0 and json.loads(path.read_text()) == VECTORS


def test_vectors_out_refuses_a_dangling_symlink_and_a_directory(tmp_path, capsys):
    link = tmp_path / "link.json"
    link.symlink_to(tmp_path / "nowhere.json")
    code, _, err = run(capsys, "vectors", "--out", str(link))
    assert code == 2 and "exists; pass --overwrite" in err
    assert not (tmp_path / "nowhere.json").exists()
    code, _, err = run(capsys, "vectors", "--out", str(tmp_path))
    assert code == 2 and "--out: expected a file name; got the directory" in err


def test_out_with_check_is_refused_not_ignored(tmp_path, capsys):
    good = write_vectors(tmp_path / "v.json")
    code, out, err = run(capsys, "vectors", "--check", str(good), "--out",
                         str(tmp_path / "new.json"))
    assert code == 2 and "--out: expected no --out with --check" in err
    assert not (tmp_path / "new.json").exists()


def test_check_of_a_file_without_cases_exits_1(tmp_path, capsys):
    path = tmp_path / "empty.json"
    path.write_text(json.dumps({"format": "minikto-vectors", "version": 1, "cases": []}))
    code, out, _ = run(capsys, "vectors", "--check", str(path))
    assert code == 1 and "file: expected a non-empty list of cases" in out and "FAILED" in out


def test_check_of_a_good_file_exits_0(tmp_path, capsys):
    code, out, _ = run(capsys, "vectors", "--check", str(write_vectors(tmp_path / "v.json")))
    assert code == 0 and "all cases agree with minikto" in out


# ------------------------------------------------------------------------------------------
# FIFOs and devices: refused before a byte is read, as --check and as --data


def _fifo(tmp_path):
    if not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs on this platform")
    path = tmp_path / "pipe"
    os.mkfifo(path)
    return path


def _with_deadline(target):
    """Run ``target`` in a thread; a hang fails the test instead of blocking the suite."""
    result = {}
    thread = threading.Thread(target=lambda: result.update(value=target()), daemon=True)
    thread.start()
    thread.join(timeout=20)
    assert not thread.is_alive(), "hung"
    return result["value"]


@pytest.mark.parametrize("flag", ["--check", "--data"])
def test_a_fifo_is_refused_not_waited_on(tmp_path, capsys, monkeypatch, flag):
    pipe = _fifo(tmp_path)
    monkeypatch.chdir(tmp_path)
    argv = (["vectors", "--check", str(pipe)] if flag == "--check"
            else ["train", "--out", "run", "--data", str(pipe), "--max-steps", "1"])
    code, _, err = _with_deadline(lambda: run(capsys, *argv))
    assert code == 2 and f"expected a regular file; got {pipe}, which is a FIFO" in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("flag", ["--check", "--data"])
def test_dev_zero_is_refused_not_read_forever(tmp_path, capsys, monkeypatch, flag):
    if not os.path.exists("/dev/zero"):
        pytest.skip("no /dev/zero")
    monkeypatch.chdir(tmp_path)
    argv = (["vectors", "--check", "/dev/zero"] if flag == "--check"
            else ["train", "--out", "run", "--data", "/dev/zero", "--max-steps", "1"])
    code, _, err = _with_deadline(lambda: run(capsys, *argv))
    assert code == 2 and "expected a regular file; got /dev/zero, which is a character" in err


def test_reads_are_bounded(tmp_path):
    path = tmp_path / "big.json"
    path.write_bytes(b"x" * 101)
    with pytest.raises(ValueError, match="vectors: expected a file of at most 100 bytes; got "):
        read_user_bytes(path, name="vectors", max_bytes=100)
    with pytest.raises(ValueError, match="of 101 bytes"):
        open_user_file(path, max_bytes=100)
    assert read_user_bytes(path, max_bytes=101) == b"x" * 101


def test_a_file_that_grows_while_it_is_read_is_refused(tmp_path, monkeypatch):
    path = tmp_path / "growing.json"
    path.write_bytes(b"x" * 10)
    real_fstat = os.fstat

    def shrunk(fd):  # the size seen at open time: 10 bytes; then 1000 are read
        info = real_fstat(fd)
        return os.stat_result((*info[:6], 10, *info[7:]))

    path.write_bytes(b"x" * 1000)
    monkeypatch.setattr(os, "fstat", shrunk)
    with pytest.raises(ValueError, match="grew past that while it was read"):
        read_user_bytes(path, max_bytes=100)


def test_a_directory_is_an_is_a_directory_error_naming_it(tmp_path):
    with pytest.raises(IsADirectoryError, match=f"got the directory {tmp_path}"):
        open_user_file(tmp_path)


def test_a_failed_write_names_the_users_file_not_the_temporary_one(tmp_path, monkeypatch):
    import errno

    path = tmp_path / "vectors.json"
    path.write_text("old")

    def full(src, dst):
        raise OSError(errno.ENOSPC, "No space left on device", str(src))

    monkeypatch.setattr(os, "replace", full)
    with pytest.raises(OSError) as caught:
        write_vectors(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: could not write the vectors file: No space left")
    assert ".tmp" not in message and caught.value.errno == errno.ENOSPC
    assert path.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == [path.name]


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"x", "expected a JSON vectors file"), (b"\xff", "expected a JSON vectors file"),
     (b"[1, 2]", "expected a JSON object; got list")],
)
def test_a_file_that_is_not_a_json_object_is_refused_naming_it(tmp_path, content, message):
    path = tmp_path / "v.json"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=f"vectors file {path}: {message}"):
        check_vectors(path)


def test_a_stored_output_of_the_wrong_shape_is_named():
    def longer(vectors):
        case(vectors, "kto_mixed")["outputs"]["losses"].append(0.5)

    (failure,) = check_vectors(tampered(longer))
    assert failure == "kto_mixed: losses: stored shape (9,), computed shape (8,)"


def test_a_dataset_that_grows_while_it_is_read_is_refused_at_its_line(tmp_path, monkeypatch):
    import minikto.data.jsonl as jsonl
    from minikto.data.toy import default_task

    line = b'{"prompt": "greet a friend", "completion": " hello .", "label": true}\n'
    path = tmp_path / "d.jsonl"
    path.write_bytes(line * 3)
    real_fstat = os.fstat
    monkeypatch.setattr(os, "fstat", lambda fd: os.stat_result(
        (*real_fstat(fd)[:6], len(line), *real_fstat(fd)[7:])))
    monkeypatch.setattr(jsonl, "MAX_DATA_BYTES", len(line) + 1)
    with pytest.raises(jsonl.DatasetFormatError, match=r"line 2: the file grew past"):
        jsonl.read_unpaired(path, default_task())
