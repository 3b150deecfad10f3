"""The notebooks teach with code that runs: every ``notebooks/[0-9]*.ipynb`` executes top to
bottom, is committed executed in order, and has solvable exercises.

Each notebook runs through the same function as ``scripts/run_notebooks.py`` (a fresh kernel
on this interpreter), in a temporary copy of ``notebooks/``, so the committed files and their
outputs are never modified.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
SOLUTIONS = ROOT / "notebooks" / "solutions"
CELL_TIMEOUT = 240  # seconds for one cell
NOTEBOOK_BUDGET = 120  # seconds for a whole notebook: twice the 60 s target, for slow CI


def _load_runner():
    script = ROOT / "scripts" / "run_notebooks.py"
    spec = importlib.util.spec_from_file_location("run_notebooks", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


runner = _load_runner()
NOTEBOOKS = runner.notebook_paths()
# A notebook's worked solutions: notebooks/solutions/<stem>.py with "# %% exercise-N" blocks.
WITH_SOLUTIONS = [p for p in NOTEBOOKS if (SOLUTIONS / f"{p.stem}.py").exists()]
BLOCK = re.compile(r"^# %% (exercise-\d+)\s*$", re.MULTILINE)
VERDICT = re.compile(r"^Exercise (\d+): (.*)$", re.MULTILINE)


def _execute_copy(nb: nbformat.NotebookNode, tmp_path: Path) -> float:
    workdir = tmp_path / "notebooks"
    shutil.copytree(ROOT / "notebooks", workdir)
    return runner.execute_notebook(nb, workdir, timeout=CELL_TIMEOUT)


def _exercise_tag(cell) -> str | None:
    tags = [t for t in cell.metadata.get("tags", []) if t.startswith("exercise-")]
    assert len(tags) <= 1, f"a cell holds several exercise tags: {tags}"
    return tags[0] if tags else None


def _printed(nb: nbformat.NotebookNode) -> str:
    return "".join(
        output.get("text", "")
        for cell in nb.cells
        for output in cell.get("outputs", [])
        if output.get("output_type") == "stream"
    )


def test_there_are_notebooks_to_run():
    assert len(NOTEBOOKS) >= 2, f"expected notebooks in {runner.NOTEBOOK_DIR}; got {NOTEBOOKS}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_top_to_bottom_without_errors_within_budget(path, tmp_path):
    nb = nbformat.read(path, as_version=4)
    seconds = _execute_copy(nb, tmp_path)  # raises CellExecutionError on a failing cell
    assert runner.cell_errors(nb) == []
    runner.docs_figures(nb)  # every cell marked as the README's figure drew one
    assert seconds < NOTEBOOK_BUDGET, f"{path.name} took {seconds:.0f} s"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_committed_notebook_is_executed_in_order_with_clean_outputs(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code" and c.source.strip()]
    counts = [c.execution_count for c in code]
    assert counts == list(range(1, len(code) + 1)), (
        f"{path.name}: execution counts {counts}; regenerate it with "
        "`python scripts/run_notebooks.py`"
    )
    assert runner.cell_errors(nb) == []
    assert any(c.outputs for c in code), f"{path.name} is committed without outputs"


@pytest.mark.parametrize("path", WITH_SOLUTIONS, ids=[p.stem for p in WITH_SOLUTIONS])
def test_worked_solutions_pass_the_exercise_checks(path, tmp_path):
    text = (SOLUTIONS / f"{path.stem}.py").read_text(encoding="utf-8")
    pieces = BLOCK.split(text)  # [preamble, name_1, block_1, name_2, block_2, ...]
    names, blocks = pieces[1::2], pieces[2::2]
    solutions = {name: block.strip() for name, block in zip(names, blocks, strict=True)}
    nb = nbformat.read(path, as_version=4)
    stubs = {_exercise_tag(c): c for c in nb.cells if _exercise_tag(c)}
    tags = sorted(stubs)
    assert tags == sorted(solutions), f"stub cells {tags}, solution blocks {sorted(solutions)}"
    for tag, cell in stubs.items():
        cell.source = solutions[tag]
    _execute_copy(nb, tmp_path)
    verdicts = dict(VERDICT.findall(_printed(nb)))
    assert sorted(verdicts) == sorted(t.split("-")[1] for t in tags)
    assert all(v.startswith("correct") for v in verdicts.values()), verdicts


@pytest.mark.parametrize("path", WITH_SOLUTIONS, ids=[p.stem for p in WITH_SOLUTIONS])
def test_committed_exercises_are_stubs_that_the_checks_report_unsolved(path):
    nb = nbformat.read(path, as_version=4)
    verdicts = dict(VERDICT.findall(_printed(nb)))
    assert verdicts, f"{path.name}: no exercise check printed a verdict"
    assert not any(v.startswith("correct") for v in verdicts.values()), verdicts
