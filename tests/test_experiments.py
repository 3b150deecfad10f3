"""The experiments of docs/RESULTS.md, run at their reduced ``quick`` size.

Each experiment runs once (the session fixture ``quick_experiments`` of conftest.py, which
test_figure_style and test_minority share); the tests check the files it writes and one or
more properties of its numbers that would fail if the claim, the design or the code broke.
Full-size numbers live in docs/RESULTS.md, written by
``minikto experiment all --out results --write-docs``.
"""

from __future__ import annotations

import csv
import json
import math
import re
from pathlib import Path

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")

from minikto.experiments import EXPERIMENTS, QUICK_SEEDS, run_experiment  # noqa: E402
from minikto.experiments.common import (  # noqa: E402
    aggregate,
    check_seeds,
    section_markdown,
    update_results_md,
)
from minikto.tools.cli import build_parser, main  # noqa: E402

DOCS = Path(__file__).resolve().parent.parent / "docs"

#: columns every runs.csv must have, per experiment
COLUMNS = {
    "imbalance": {"seed", "method", "weighting", "desirable_fraction", "desirable_weight",
                  "eq8_ratio", "utility", "utility_reference", "kl", "desirable_mass"},
    "noise": {"seed", "method", "label_noise", "flipped_pairs", "utility", "utility_drop", "kl"},
    "contradiction": {"seed", "setting", "method", "max_param_change", "max_grad", "loss_min",
                      "loss_max", "mass_before", "mass_after", "utility_before",
                      "utility_after", "kl_after"},
    "minority": {"seed", "p", "reference_log_odds", "method", "log_odds", "dpo_optimum",
                 "picks"},
    "one-y-per-x": {"seed", "arm", "examples", "n_desirable", "utility", "kl"},
    "reference-point": {"seed", "beta", "z0", "utility", "kl", "clamped", "z0_minus_kl",
                        "unclamped_minus_kl", "loss_roughness", "utility_fall", "diverged"},
    "frontier": {"seed", "method", "beta", "utility", "kl", "desirable_mass"},
    "family": {"seed", "loss", "beta", "halo", "utility", "kl", "desirable_mass"},
    "skip-sft": {"seed", "method", "sft", "utility", "kl", "cut_mass", "desirable_mass"},
}


@pytest.fixture
def quick(quick_experiments):
    """Every experiment at its quick size (run once, in conftest.py): name -> (result, dir)."""
    return quick_experiments


def rows_of(quick, name):
    return quick[name][0].rows


# ------------------------------------------------------------------------------------------
# Files and registry


def test_the_registry_and_the_command_line_offer_the_same_experiments():
    assert list(EXPERIMENTS) == ["imbalance", "noise", "contradiction", "minority",
                                 "one-y-per-x", "reference-point", "frontier", "family",
                                 "skip-sft"]
    parser = build_parser()
    for name in [*EXPERIMENTS, "all"]:
        assert parser.parse_args(["experiment", name]).name == name


@pytest.mark.parametrize("name", list(EXPERIMENTS))
def test_each_experiment_writes_every_run_a_table_a_figure_and_its_docs_section(quick, name):
    result, out = quick[name]
    with open(out / "runs.csv", encoding="utf-8", newline="") as f:
        runs = list(csv.DictReader(f))
    assert len(runs) == len(result.rows) > 0
    assert COLUMNS[name] <= set(runs[0])
    assert {int(r["seed"]) for r in runs} == set(range(QUICK_SEEDS))
    table = (out / "table.md").read_text(encoding="utf-8").splitlines()
    assert table[0].startswith("| ") and set(table[1]) <= {"|", "-"}
    assert len(table) == 2 + len(result.table)
    assert (out / f"results_{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    section = (out / "section.md").read_text(encoding="utf-8")
    assert section.startswith(f"<!-- BEGIN experiment {name} ")
    assert section.rstrip().endswith(f"<!-- END experiment {name} -->")
    assert f"figures/results_{name}.png" in section and "\n".join(table) in section
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["command"] == f"minikto experiment {name} --quick"
    assert summary["seeds"] == QUICK_SEEDS and summary["quick"] is True
    assert result.verdict and result.verdict in section


@pytest.mark.parametrize("name", list(EXPERIMENTS))
def test_utilities_and_kls_are_exact_numbers_in_range(quick, name):
    for row in rows_of(quick, name):
        for key in ("utility", "utility_after", "utility_before"):
            if row.get(key) is not None:
                assert -2.0 <= row[key] <= 2.0  # the hidden utility is clipped to [-2, 2]
        for key in ("kl", "kl_after"):
            if row.get(key) is not None:
                assert row[key] >= -1e-12 and math.isfinite(row[key])


# ------------------------------------------------------------------------------------------
# One property per experiment (at least)


def test_imbalance_with_eq8_weights_every_run_beats_the_reference(quick):
    rows = rows_of(quick, "imbalance")
    eq8 = [r for r in rows if r["weighting"] == "eq8"]
    assert {r["desirable_fraction"] for r in eq8} == {1.0, 0.1}
    for r in eq8:
        assert 1.0 <= r["eq8_ratio"] <= 4.0 / 3.0
        assert r["utility"] > r["utility_reference"] + 0.5


def test_imbalance_without_eq8_weights_ten_percent_desirable_does_worse(quick):
    rows = rows_of(quick, "imbalance")

    def mean(weighting):
        return np.mean([r["utility"] for r in rows
                        if r["weighting"] == weighting and r["desirable_fraction"] == 0.1])

    assert mean("eq8") > mean("one") + 0.3


def test_noise_flipped_labels_cost_kto_less_utility_than_dpo(quick):
    rows = rows_of(quick, "noise")
    for r in rows:
        assert r["flipped_pairs"] == round(r["label_noise"] * r["pairs"])
        if r["label_noise"] == 0.0:
            assert r["utility"] > r["utility_reference"] and r["utility_drop"] == 0.0

    def drop(method):
        return np.mean([r["utility_drop"] for r in rows
                        if r["method"] == method and r["label_noise"] == 0.4])

    assert 0.0 < drop("kto") < drop("dpo")


def test_contradiction_kto_loss_is_one_half_and_its_parameters_do_not_move(quick):
    rows = rows_of(quick, "contradiction")
    kto_full = [r for r in rows if r["method"] == "kto" and r["setting"] != "minibatch"]
    assert {r["setting"] for r in kto_full} == {"reference", "reference-sgd", "aligned",
                                                "aligned-ref-pairs"}
    for r in kto_full:
        assert abs(r["loss_min"] - 0.5) <= 1e-12 and abs(r["loss_max"] - 0.5) <= 1e-12
        assert r["max_grad"] <= 1e-15  # float64 rounding of exactly cancelling terms
        # Adam's step is lr * g / (sqrt(v) + 1e-8): rounding-size g moves theta by << 1e-8
        bound = 1e-15 if r["optimizer"] == "sgd" else 1e-8
        assert r["max_param_change"] <= bound
        assert abs(r["utility_after"] - r["utility_before"]) <= 1e-8


def test_contradiction_dpo_moves_and_pushes_both_responses_down_after_alignment(quick):
    rows = rows_of(quick, "contradiction")
    dpo = [r for r in rows if r["method"] == "dpo" and r["setting"] == "aligned-ref-pairs"]
    assert len(dpo) == QUICK_SEEDS
    assert max(r["max_param_change"] for r in dpo) > 0.1
    assert np.mean([r["mass_y1_after"] for r in dpo]) < np.mean([r["mass_y1_before"] for r in dpo])
    assert np.mean([r["mass_y2_after"] for r in dpo]) < np.mean([r["mass_y2_before"] for r in dpo])
    # from the reference with plain SGD, DPO is on its optimum set (r1 = r2 = 0) and stays
    sgd = [r for r in rows if r["method"] == "dpo" and r["setting"] == "reference-sgd"]
    assert max(r["max_param_change"] for r in sgd) <= 1e-15


def test_an_experiment_is_a_deterministic_function_of_its_seeds(quick, tmp_path):
    again = run_experiment("contradiction", tmp_path / "again", quick=True)
    assert again.rows == rows_of(quick, "contradiction")


def test_one_y_per_x_kto_learns_from_one_response_per_prompt(quick):
    rows = rows_of(quick, "one-y-per-x")
    for r in rows:
        expected = 2 * r["instances"] if r["arm"] == "kto-both" else r["instances"]
        if r["arm"] != "dpo":
            assert abs(r["examples"] - expected) <= 0.01 * r["instances"]  # tied pairs dropped
        assert r["utility"] > r["utility_reference"] + 0.5


def test_reference_point_batch_estimate_is_mostly_clamped_and_below_the_exact_kl(quick):
    rows = rows_of(quick, "reference-point")
    assert not any(r["diverged"] for r in rows)
    for r in rows:
        if r["z0"] in ("batch", "batch-grad"):
            assert r["clamped"] > 0.5
            assert r["unclamped_minus_kl"] < 0.0 and r["z0_minus_kl"] < 0.0
            assert r["minus_reverse_kl"] <= 0.0
        else:
            assert r["clamped"] is None and r["unclamped_minus_kl"] is None
    exact = [r["z0_minus_kl"] for r in rows if r["z0"] == "exact"]
    batch = [r["z0_minus_kl"] for r in rows if r["z0"] == "batch"]
    assert max(abs(e) for e in exact) < 0.2 < min(abs(b) for b in batch)


def test_frontier_a_larger_beta_keeps_kto_and_dpo_closer_to_the_reference(quick):
    table = quick["frontier"][0].table
    for method in ("kto", "kto-pairs", "dpo"):
        points = sorted((r for r in table if r["method"] == method), key=lambda r: r["beta"])
        assert points[0]["beta"] < points[-1]["beta"]
        assert points[0]["kl_mean"] > points[-1]["kl_mean"]
    (sft,) = [r for r in table if r["method"] == "sft"]
    assert sft["beta"] is None and sft["n"] == QUICK_SEEDS


# ------------------------------------------------------------------------------------------
# The command line and docs/RESULTS.md


def test_the_command_writes_a_directory_and_never_overwrites_it_silently(tmp_path, capsys):
    args = ["experiment", "skip-sft", "--quick", "--out", str(tmp_path)]  # the quickest one
    assert main(args) == 0
    assert "wrote" in capsys.readouterr().out
    runs = tmp_path / "skip-sft" / "runs.csv"
    before = runs.read_bytes()
    assert main(args) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert runs.read_bytes() == before
    assert main([*args, "--overwrite"]) == 0


def test_docs_are_written_only_from_full_size_runs(tmp_path, capsys):
    args = ["experiment", "noise", "--quick", "--out", str(tmp_path), "--write-docs",
            "--docs", str(tmp_path / "docs")]
    assert main(args) == 2
    assert "full-size" in capsys.readouterr().err
    assert not (tmp_path / "docs").exists() and not (tmp_path / "noise").exists()
    with pytest.raises(ValueError, match="seeds"):
        run_experiment("noise", tmp_path / "n", seeds=2, docs_dir=tmp_path / "docs")


def test_results_md_update_replaces_one_section_and_keeps_the_others(quick, tmp_path):
    order = list(EXPERIMENTS)
    noise, imbalance = quick["noise"][0], quick["imbalance"][0]
    update_results_md(tmp_path, "noise", section_markdown(noise, "cmd-1"), order)
    update_results_md(tmp_path, "imbalance", section_markdown(imbalance, "cmd-2"), order)
    update_results_md(tmp_path, "noise", section_markdown(noise, "cmd-3"), order)
    text = (tmp_path / "RESULTS.md").read_text(encoding="utf-8")
    begins = re.findall(r"<!-- BEGIN experiment (\S+) ", text)
    assert begins == order  # every experiment once, in registry order
    assert "cmd-3" in text and "cmd-1" not in text and "cmd-2" in text
    assert text.count("# What the toy says") == 1


def test_the_committed_results_md_has_a_generated_section_and_figure_per_experiment():
    text = (DOCS / "RESULTS.md").read_text(encoding="utf-8")
    for name in EXPERIMENTS:
        block = re.search(rf"<!-- BEGIN experiment {re.escape(name)} .*?"
                          rf"<!-- END experiment {re.escape(name)} -->", text, flags=re.DOTALL)
        assert block, f"no section for {name}"
        assert f"`minikto experiment {name}" in block.group(0)
        assert "--quick" not in block.group(0)
        assert (DOCS / "figures" / f"results_{name}.png").exists()


# ------------------------------------------------------------------------------------------
# The shared helpers


def test_aggregate_groups_in_order_and_summarises_each_group():
    rows = [{"arm": a, "x": x} for a, x in (("b", 1.0), ("a", 2.0), ("b", 3.0), ("a", 6.0))]
    out = aggregate(rows, by=("arm",), metrics=("x",))
    assert [g["arm"] for g in out] == ["b", "a"]
    for group in out:
        values = [r["x"] for r in rows if r["arm"] == group["arm"]]
        assert group["n"] == len(values)
        assert group["x_mean"] == pytest.approx(np.mean(values))
        assert group["x_std"] == pytest.approx(np.std(values, ddof=1))
        assert (group["x_min"], group["x_max"]) == (min(values), max(values))


@pytest.mark.parametrize("bad", [0, -1, True, 2.5, "3"])
def test_seeds_must_be_a_positive_int(bad):
    with pytest.raises(ValueError, match=r"^seeds: expected an int >= 1; got "):
        check_seeds(bad)


def test_results_md_update_keeps_every_byte_outside_the_markers(quick, tmp_path):
    order = list(EXPERIMENTS)
    noise = quick["noise"][0]
    update_results_md(tmp_path, "noise", section_markdown(noise, "cmd-1"), order)
    path = tmp_path / "RESULTS.md"
    text = path.read_text(encoding="utf-8")
    text = "# My own title\r\n\r\nA paragraph I wrote.\n\n" + text + "\nMy closing notes.\n"
    path.write_text(text, encoding="utf-8", newline="")
    update_results_md(tmp_path, "noise", section_markdown(noise, "cmd-2"), order)
    new = path.read_bytes().decode()
    assert new == text.replace("cmd-1", "cmd-2")
    # a section missing from the file goes before the next experiment's, the rest untouched
    start = new.index("<!-- BEGIN experiment imbalance")
    end = new.index("<!-- END experiment imbalance -->") + len("<!-- END experiment imbalance -->")
    path.write_text(new[:start] + new[end:].lstrip("\n"), encoding="utf-8", newline="")
    update_results_md(tmp_path, "imbalance", section_markdown(quick["imbalance"][0], "cmd-3"),
                      order)
    final = path.read_bytes().decode()
    assert final.startswith("# My own title\r\n\r\nA paragraph I wrote.")
    assert final.endswith("My closing notes.\n")
    assert final.index("BEGIN experiment imbalance") < final.index("BEGIN experiment noise")


def test_an_experiment_never_replaces_a_folder_it_did_not_write(tmp_path, capsys):
    target = tmp_path / "contradiction"
    target.mkdir()
    (target / "thesis.txt").write_text("mine")
    code = main(["experiment", "contradiction", "--quick", "--out", str(tmp_path),
                 "--overwrite"])
    assert code == 2 and "thesis.txt" in capsys.readouterr().err
    assert sorted(p.name for p in target.iterdir()) == ["thesis.txt"]
