"""Flags and config values that used to be read silently otherwise than meant: an empty path,
both weights 0, ``--overwrite --resume``, ``--quiet``, Ctrl-C before any folder, YAML 1.1
numbers and repeated merge keys, a dangling ``data --out`` link, and ``--write-docs``.

Each test fails on the code before (the cases all exited 0, or said something false).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest

import minikto.experiments
import minikto.training.train as train_module
from minikto.tools.cli import main
from minikto.training.config import KTOConfig, check_weight_balance

TRAIN = ["train", "--n", "100", "--max-steps", "2", "--batch-size", "16"]


def interrupted(*args, **kwargs):
    raise KeyboardInterrupt


# ------------------------------------------------------------------------------------------
# 5. An empty string is not "not given"


@pytest.mark.parametrize(
    ("argv", "flag"),
    [(["train", "--out", "r", "--data", ""], "--data"),
     (["train", "--out", "r", "--config", ""], "--config"),
     (["train", "--out", ""], "--out"),
     (["data", "--out", ""], "--out"),
     (["experiment", "imbalance", "--docs", "", "--write-docs"], "--docs"),
     (["check", "f.py:kto", "--sequence", ""], "--sequence")],
)
def test_an_empty_path_is_an_error_naming_the_flag(tmp_path, monkeypatch, capsys, argv, flag):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as info:
        main(argv)
    err = capsys.readouterr().err
    assert info.value.code == 2 and f"argument {flag}" in err and "empty string" in err
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------------------
# 7. Both weights 0; the ratio 0/0


def test_both_weights_zero_are_refused_naming_both():
    with pytest.raises(ValueError, match=r"^desirable_weight, undesirable_weight: expected at "
                                         r"least one > 0; got both 0"):
        KTOConfig(desirable_weight=0, undesirable_weight=0.0)
    KTOConfig(desirable_weight=0, undesirable_weight=1.0)  # one side may be switched off


def test_the_weight_check_prints_zero_over_zero_as_such_and_gives_no_false_band():
    with pytest.warns(UserWarning) as record:
        ratio, _ = check_weight_balance(10, 20, 0.0, 0.0)
    message = str(record[0].message)
    assert ratio != ratio  # NaN: 0/0 has no value
    assert "0/0" in message and "= inf" not in message and "[0.000, 0.000]" not in message
    with pytest.warns(UserWarning) as record:
        check_weight_balance(10, 20, 1.0, 0.0)
    assert "= inf" in str(record[0].message) and "undesirable_weight > 0" in str(
        record[0].message)


# ------------------------------------------------------------------------------------------
# 9. --overwrite --resume, --quiet, Ctrl-C before a folder exists, YAML 1.1, data --out link


def test_overwrite_and_resume_together_are_refused(tmp_path, capsys):
    assert main([*TRAIN, "--out", str(tmp_path / "r"), "--quiet"]) == 0
    before = (tmp_path / "r" / "checkpoint.npz").read_bytes()
    capsys.readouterr()
    assert main([*TRAIN, "--out", str(tmp_path / "r"), "--overwrite", "--resume"]) == 2
    assert "--overwrite, --resume: expected at most one" in capsys.readouterr().err
    assert (tmp_path / "r" / "checkpoint.npz").read_bytes() == before
    from minikto.data.feedback import sample_unpaired
    from minikto.data.toy import default_task

    task = default_task()
    with pytest.raises(ValueError, match="overwrite, resume: expected at most one"):
        train_module.train(task, sample_unpaired(task, 50), KTOConfig(max_steps=1),
                           out_dir=tmp_path / "r", overwrite=True, resume=True)


def test_quiet_train_prints_nothing_on_stdout(tmp_path, capsys):
    assert main([*TRAIN, "--out", str(tmp_path / "r"), "--quiet"]) == 0
    assert capsys.readouterr().out == ""
    assert main([*TRAIN, "--out", str(tmp_path / "s")]) == 0
    assert '"expected_utility"' in capsys.readouterr().out


def test_ctrl_c_before_any_folder_exists_does_not_suggest_resume(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(train_module, "train", interrupted)
    assert main([*TRAIN, "--out", str(tmp_path / "r")]) == 130
    err = capsys.readouterr().err
    assert "--resume" not in err and "Nothing was written" in err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    ("text", "key", "what"),
    [("beta: 010\n", "beta", "octal"),
     ("max_steps: 1:30\n", "max_steps", "sexagesimal"),
     ("learning_rate: 1:30.5\n", "learning_rate", "sexagesimal"),
     ("progress: yes\n", "progress", "boolean"),
     ("progress: off\n", "progress", "boolean")],
)
def test_a_yaml_1_1_reading_is_refused_naming_the_key(tmp_path, text, key, what):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=rf"{key}: .* is {'an' if what == 'octal' else 'a'} "
                                         rf"{what}"):
        KTOConfig.from_file(path)


def test_quoted_or_plain_yaml_values_are_read_as_written(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text('beta: 0.10\nmax_steps: 10\nz0: "zero"\nprogress: true\n')
    config = KTOConfig.from_file(path)
    assert (config.beta, config.max_steps, config.progress) == (0.1, 10, True)


def test_repeated_yaml_merge_keys_are_a_duplicate_key(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("base: &a {beta: 0.2}\nmore: &b {seed: 3}\nrun:\n  <<: *a\n  <<: *b\n")
    with pytest.raises(ValueError, match="duplicate key '<<'"):
        KTOConfig.from_file(path)


def test_data_out_through_a_dangling_symlink_is_refused(tmp_path, capsys):
    link = tmp_path / "d.jsonl"
    link.symlink_to(tmp_path / "elsewhere.jsonl")
    assert main(["data", "--out", str(link), "--n", "20"]) == 2
    assert "is a symbolic link to" in capsys.readouterr().err
    assert not (tmp_path / "elsewhere.jsonl").exists() and link.is_symlink()


# ------------------------------------------------------------------------------------------
# 15. experiment --write-docs checks the docs before running


@pytest.fixture
def no_experiment_runs(monkeypatch):
    """Every experiment replaced by one that fails the test if it is ever run."""
    def ran(**kwargs):
        raise AssertionError("the experiment ran before the docs were checked")

    for name in list(minikto.experiments.EXPERIMENTS):
        monkeypatch.setitem(minikto.experiments.EXPERIMENTS, name, ran)


def test_write_docs_refuses_to_replace_a_figure_unasked(tmp_path, capsys, no_experiment_runs):
    docs = tmp_path / "docs"
    (docs / "figures").mkdir(parents=True)
    (docs / "figures" / "results_noise.png").write_bytes(b"the published figure")
    argv = ["experiment", "noise", "--out", str(tmp_path / "results"), "--docs", str(docs),
            "--write-docs", "--seeds", "3"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "results_noise.png" in err and "--overwrite" in err
    assert (docs / "figures" / "results_noise.png").read_bytes() == b"the published figure"
    assert not (tmp_path / "results").exists()


def test_write_docs_refuses_a_results_md_that_is_not_utf8_before_running(
    tmp_path, capsys, no_experiment_runs
):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "RESULTS.md").write_bytes(b"# Results\n\xff\xfe caf\xe9\n")
    argv = ["experiment", "noise", "--out", str(tmp_path / "results"), "--docs", str(docs),
            "--write-docs", "--seeds", "3", "--overwrite"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "RESULTS.md is not readable UTF-8" in err and "byte 11" in err
    assert not (tmp_path / "results").exists()


def test_write_docs_with_overwrite_replaces_the_figure(tmp_path, monkeypatch, capsys):
    from minikto.experiments.common import ExperimentResult

    def tiny(seeds, quick):
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        return ExperimentResult(
            name="noise", title="noise", claim="c", design="d", table=[], table_md="|a|",
            verdict="v", figure=plt.figure(), rows=[{"a": 1}], seeds=seeds, quick=quick,
        )

    monkeypatch.setitem(minikto.experiments.EXPERIMENTS, "noise", tiny)
    docs = tmp_path / "docs"
    (docs / "figures").mkdir(parents=True)
    (docs / "figures" / "results_noise.png").write_bytes(b"old")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code = main(["experiment", "noise", "--out", str(tmp_path / "results"), "--docs",
                     str(docs), "--write-docs", "--seeds", "3", "--overwrite", "--quiet"])
    assert code == 0 and capsys.readouterr().out == ""  # --quiet: nothing but errors
    assert (docs / "figures" / "results_noise.png").read_bytes()[:4] == b"\x89PNG"
    assert "experiment noise" in (docs / "RESULTS.md").read_text()
    assert json.loads((tmp_path / "results" / "noise" / "summary.json").read_text())["seeds"] == 3
    assert Path(tmp_path / "results" / "noise" / ".minikto-manifest").is_file()
