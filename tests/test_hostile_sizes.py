"""Sizes a user can ask for but no machine holds: YAML alias bombs, values of any size in an
error message, runs whose data or embeddings exceed the memory, and a checkpoint whose zip
members expand past the file.

Each test fails on the code before: 321 bytes of aliases under ``loss:`` printed a 351 MB
error line, ``--n 100000000000`` and ``--features 1000000000`` ended in ``_ArrayMemoryError``
tracebacks, and a zip-bomb member was read whole.
"""

from __future__ import annotations

import io
import time
import zipfile

import numpy as np
import pytest

import minikto
from minikto._brief import LIMIT, brief
from minikto.tools.cli import main
from minikto.training.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from minikto.training.config import KTOConfig


def alias_bomb(key: str, levels: int = 9) -> str:
    """``levels`` lists of ten aliases of the previous one: 10**levels items, a few hundred
    bytes."""
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    lines.append(f"{key}: [" + ", ".join([f"*a{levels - 1}"] * 10) + "]")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------
# 10. Bounded error messages; bounded configs


@pytest.mark.parametrize("key", ["loss", "max_steps", "beta", "z0", "unknown_key"])
def test_a_yaml_alias_bomb_is_refused_quickly_in_a_short_message(tmp_path, capsys, key):
    path = tmp_path / "bomb.yaml"
    path.write_text(alias_bomb(key))
    assert len(path.read_bytes()) < 1000
    started = time.perf_counter()
    assert main(["train", "--out", str(tmp_path / "r"), "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert time.perf_counter() - started < 30
    assert len(err) < 1000 and "aliases are expanded" in err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    "value",
    ["x" * 10**6, [[["x" * 1000] * 1000] * 1000] * 1000, {"k" * 10**5: ["v"] * 10**5},
     10**5000, -(10**400), b"\xff" * 10**6],
    ids=["megabyte str", "nested lists", "big dict", "5000 digits", "-400 digits", "bytes"],
)
def test_every_config_error_bounds_the_value_it_echoes(value):
    for field in ("loss", "beta", "max_steps", "z0", "features", "progress", "backend"):
        with pytest.raises((ValueError, TypeError)) as info:
            KTOConfig(**{field: value})
        assert len(str(info.value)) < 2 * LIMIT + 300, field
    with pytest.raises(ValueError) as info:
        KTOConfig.from_dict({"x" * 10**6: 1})
    assert len(str(info.value)) < 2 * LIMIT + 600


def test_brief_is_bounded_in_length_and_time_and_exact_for_short_values():
    assert brief("beta") == "'beta'" and brief(0.1) == "0.1" and brief([1, 2]) == "[1, 2]"
    nested = ["x"]
    for _ in range(30):
        nested = [nested] * 10  # 10**30 items if written out
    started = time.perf_counter()
    for value in (nested, "y" * 10**7, 10**10000, {i: i for i in range(10**5)}):
        assert len(brief(value)) <= LIMIT
    assert time.perf_counter() - started < 5
    assert "digits" in brief(10**10000)


# ------------------------------------------------------------------------------------------
# 12. Memory estimated before allocating; checkpoint members read with a bound


@pytest.mark.parametrize(
    ("argv", "flag"),
    [(["train", "--out", "r", "--n", "100000000000"], "--n"),
     (["data", "--out", "d.jsonl", "--n", "1000000000000"], "--n"),
     (["data", "--out", "d.jsonl", "--n", "1000000000000", "--paired"], "--n"),
     (["train", "--out", "r", "--features", "1000000000", "--sft-steps", "1", "--n", "100"],
      "--features")],
)
def test_a_size_no_machine_holds_is_refused_with_the_estimate_and_the_flag(
    tmp_path, monkeypatch, capsys, argv, flag
):
    monkeypatch.chdir(tmp_path)
    started = time.perf_counter()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"error: {flag}: " in err and "GiB of memory" in err and f"lower {flag}" in err
    assert "Traceback" not in err and time.perf_counter() - started < 30
    assert list(tmp_path.iterdir()) == []


def test_train_estimates_the_memory_of_embeddings_before_allocating_them():
    from minikto.data.feedback import sample_unpaired
    from minikto.data.toy import default_task
    from minikto.training.memory import MemoryEstimateError
    from minikto.training.train import train

    task = default_task()
    with pytest.raises(MemoryEstimateError, match=r"^features: embeddings of width 10000000000"):
        train(task, sample_unpaired(task, 40), KTOConfig(features=10**10, sft_steps=1))


def write_checkpoint(path, **members) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        for name, (data, method) in members.items():
            archive.writestr(name, data, compress_type=method)


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def test_a_checkpoint_member_that_expands_past_the_file_is_refused_unread(tmp_path):
    good = tmp_path / "good.npz"
    save_checkpoint(good, step=0, params={"bias": np.zeros(3)}, optimizer_state={"t": 0},
                    config={})
    bomb = tmp_path / "bomb.npz"
    header = npy_bytes(np.zeros(0))
    with zipfile.ZipFile(good) as source, zipfile.ZipFile(bomb, "w") as archive:
        archive.writestr("meta.npy", source.read("meta.npy"))
        big = header + bytes(64 << 20)  # 64 MiB of zeros deflate to ~64 KiB
        archive.writestr("param.bias.npy", big, compress_type=zipfile.ZIP_DEFLATED)
    assert bomb.stat().st_size < 1 << 20
    with pytest.raises(CheckpointError, match=r"member 'param.bias.npy' declares \d+ bytes once "
                                              r"uncompressed, more than the \d+ bytes"):
        load_checkpoint(bomb)


def test_a_npy_header_declaring_8_gib_in_a_small_member_is_refused_unallocated(tmp_path):
    good = tmp_path / "good.npz"
    save_checkpoint(good, step=0, params={"bias": np.zeros(3)}, optimizer_state={"t": 0},
                    config={})
    header = npy_bytes(np.zeros(3)).replace(b"(3,)", b"(1073741824,)", 1)
    bomb = tmp_path / "bomb.npz"
    with zipfile.ZipFile(good) as source, zipfile.ZipFile(bomb, "w") as archive:
        archive.writestr("meta.npy", source.read("meta.npy"))
        archive.writestr("param.bias.npy", header)
    with pytest.raises(CheckpointError, match=r"declares an array of shape \(1073741824,\) "
                                              r"\(8589934592 bytes\)"):
        load_checkpoint(bomb)


def test_the_core_bounds_a_huge_value_in_its_messages():
    """The math functions' own checks echo a user's value through the same bound."""
    huge = "x" * 100_000
    with pytest.raises(ValueError) as err:
        minikto.preference_loss(huge, *([np.zeros(2)] * 4))
    assert len(str(err.value)) < 2 * LIMIT
    with pytest.raises(ValueError) as err:
        minikto.SoftmaxPolicy(4, 2, features=huge)
    assert len(str(err.value)) < 2 * LIMIT
    big = 10**5000  # str() of it is refused by Python itself
    with pytest.raises(ValueError) as err:
        minikto.SoftmaxPolicy(4, 2, eos_token=big)
    assert len(str(err.value)) < 2 * LIMIT
