"""The notebooks teach with code that runs: every ``notebooks/[0-9]*.ipynb`` executes top to
bottom, is committed executed in order, and has solvable exercises.

Each notebook runs once, with its worked solutions in place of the exercise stubs, through the
same function as ``scripts/run_notebooks.py`` (a fresh kernel on this interpreter), in a
temporary copy of ``notebooks/``, so the committed files and their outputs are never modified.
"""

from __future__ import annotations

import ast
import base64
import copy
import importlib.util
import re
import shutil
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
SOLUTIONS = ROOT / "notebooks" / "solutions"
CELL_TIMEOUT = 240  # seconds for one cell
NOTEBOOK_BUDGET = 90  # seconds for a whole notebook on the 2-core CI machine


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


def _with_worked_solutions(path: Path) -> tuple[nbformat.NotebookNode, list[str] | None]:
    """``path`` read, with its exercise stubs replaced by the worked solutions of
    ``notebooks/solutions/<stem>.py``, and the numbers of the exercises so solved (None for
    a notebook without a solutions file, which runs as committed)."""
    nb = nbformat.read(path, as_version=4)
    if path not in WITH_SOLUTIONS:
        return nb, None
    text = (SOLUTIONS / f"{path.stem}.py").read_text(encoding="utf-8")
    pieces = BLOCK.split(text)  # [preamble, name_1, block_1, name_2, block_2, ...]
    names, blocks = pieces[1::2], pieces[2::2]
    solutions = {name: block.strip() for name, block in zip(names, blocks, strict=True)}
    stubs = {_exercise_tag(c): c for c in nb.cells if _exercise_tag(c)}
    tags = sorted(stubs)
    assert tags == sorted(solutions), f"stub cells {tags}, solution blocks {sorted(solutions)}"
    for tag, cell in stubs.items():
        cell.source = solutions[tag]
    return nb, sorted(t.split("-")[1] for t in tags)


# One execution per notebook, with its worked solutions in place of the exercise stubs: it
# runs top to bottom without errors, within the budget, draws the README's figures, and every
# solution passes its exercise check. The committed notebook itself (stubs and all) is also
# executed by CI (`scripts/run_notebooks.py --check --budget 90`, .ci/run); its committed
# outputs are checked below (errors, order, verdicts that say "unsolved").
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_with_its_worked_solutions_runs_within_budget_and_passes_the_checks(
    path, tmp_path
):
    nb, solved = _with_worked_solutions(path)
    seconds = _execute_copy(nb, tmp_path)  # raises CellExecutionError on a failing cell
    assert runner.cell_errors(nb) == []
    runner.docs_figures(nb)  # every cell marked as the README's figure drew one
    assert seconds < NOTEBOOK_BUDGET, f"{path.name} took {seconds:.0f} s"
    if solved is None:
        return
    verdicts = dict(VERDICT.findall(_printed(nb)))
    assert sorted(verdicts) == solved
    assert all(v.startswith("correct") for v in verdicts.values()), verdicts


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
def test_committed_exercises_are_stubs_that_the_checks_report_unsolved(path):
    nb = nbformat.read(path, as_version=4)
    verdicts = dict(VERDICT.findall(_printed(nb)))
    assert verdicts, f"{path.name}: no exercise check printed a verdict"
    assert not any(v.startswith("correct") for v in verdicts.values()), verdicts


# ------------------------------------------------------------------------------------------
# Run anywhere: links, the guarded install cell, the notebooks extra


def _code(nb: nbformat.NotebookNode) -> list:
    return [c for c in nb.cells if c.cell_type == "code"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_opens_with_its_links_and_guarded_install_and_ends_with_a_recap(path):
    nb = nbformat.read(path, as_version=4)
    url, published = runner.repository_url(), not runner.is_placeholder()
    first = nb.cells[0]
    assert first.cell_type == "markdown"
    if published:
        assert runner.badges(url, path.name) in first.source, "links out of date: regenerate"
    else:  # a placeholder address: no badge that leads nowhere, and the way to run it instead
        assert runner.BADGE not in first.source and runner.UNPUBLISHED in first.source
    for word in ("**Objectives.**", "**Prerequisites.**", "**Time:**"):
        assert word in first.source, f"{path.name}: the first cell lacks {word}"
    install = runner.install_cell(nb, path.name)
    assert (f'REPOSITORY = "{url}"' if published else "REPOSITORY = None") in install.source
    assert "except ImportError" in install.source and "pip" in install.source
    # the package alone (Colab has Jupyter), and on failure what to do, not a traceback
    assert "minikto @ git+" in install.source and "minikto[notebooks] @" not in install.source
    assert "check_call" not in install.source and "clone" in install.source
    code = _code(nb)
    before = code[: code.index(install)]  # e.g. limiting threads, before NumPy is loaded
    imported = {
        a.name
        for c in before
        for node in ast.walk(ast.parse(c.source))
        if isinstance(node, ast.Import)
        for a in node.names
    }
    assert imported <= {"os", "sys"} and not any("from " in c.source for c in before), imported
    recap = [c for c in nb.cells if c.cell_type == "markdown" and "## Recap" in c.source]
    assert recap, f"{path.name} has no recap"
    # syncing the committed notebook changes nothing: links come from pyproject.toml only
    synced = copy.deepcopy(nb)
    runner.sync_links(synced, path.name, url, published=published)
    assert synced == nb


def test_badges_are_hidden_while_the_address_is_a_placeholder_and_shown_once_it_is_real(tmp_path):
    pyproject = tmp_path / "pyproject.toml"
    line = 'Repository = "https://github.com/owner/name"'
    nb = nbformat.read(NOTEBOOKS[0], as_version=4)
    for comment, published in (("  # placeholder", False), ("", True), ("  # placeholder", False)):
        pyproject.write_text(
            f'[project]\nname = "x"\n\n[project.urls]\n{line}{comment}\n', encoding="utf-8"
        )
        assert runner.is_placeholder(pyproject) is not published
        url = runner.repository_url(pyproject)
        runner.sync_links(
            nb, NOTEBOOKS[0].name, url, published=not runner.is_placeholder(pyproject)
        )
        first, install = nb.cells[0].source, runner.install_cell(nb, NOTEBOOKS[0].name).source
        assert (runner.badges(url, NOTEBOOKS[0].name) in first) is published
        assert (runner.UNPUBLISHED in first) is not published
        assert first.count(runner.LINKS_MARKER) == 1 and first.count("Open In Colab") <= 1
        assert ('REPOSITORY = "https://github.com/owner/name"' in install) is published
        assert ("REPOSITORY = None" in install) is not published


def test_badges_point_colab_and_binder_at_the_repository():
    links = runner.badges("https://github.com/owner/name", "01_x.ipynb")
    assert (
        "https://colab.research.google.com/github/owner/name/blob/main/notebooks/01_x.ipynb"
        in links
    )
    assert "https://mybinder.org/v2/gh/owner/name/main?labpath=notebooks%2F01_x.ipynb" in links


def test_repository_url_is_read_from_pyproject_and_a_missing_one_is_named(tmp_path):
    assert runner.repository_url().startswith("https://github.com/")
    bare = tmp_path / "pyproject.toml"
    bare.write_text('[project]\nname = "x"\n', encoding="utf-8")
    with pytest.raises(ValueError, match="Repository entry under \\[project.urls\\]"):
        runner.repository_url(bare)


def test_sync_links_refuses_a_notebook_without_the_marker_or_the_install_cell():
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# title")])
    with pytest.raises(ValueError, match="first cell must be markdown"):
        runner.sync_links(nb, "x.ipynb", "https://github.com/o/n")
    nb.cells[0].source += "\n" + runner.LINKS_MARKER
    nb.cells.append(nbformat.v4.new_code_cell("import minikto"))
    with pytest.raises(ValueError, match="guarded install cell"):
        runner.sync_links(nb, "x.ipynb", "https://github.com/o/n")


#: import name -> distribution, where they differ
DISTRIBUTION = {
    "array_api_strict": "array-api-strict",
    "IPython": "ipykernel",
    "array_api_compat": "array-api-compat",
}


def _requirements() -> set[str]:
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    core = re.search(r"^dependencies = \[(.*?)\]", text, re.M | re.S).group(1)
    extra = re.search(r"^notebooks = \[(.*?)\]", text, re.M | re.S).group(1)
    names = re.findall(r'"([A-Za-z0-9_.-]+)', core + extra)
    return {n.lower() for n in names}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_the_notebooks_extra_holds_everything_the_notebook_imports(path):
    nb = nbformat.read(path, as_version=4)
    required = _requirements()
    found = set()
    for cell in _code(nb):
        source = "\n".join(
            line for line in cell.source.splitlines() if not line.lstrip().startswith(("%", "!"))
        )
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Import):
                found |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                found.add(node.module.split(".")[0])
    missing = sorted(
        name
        for name in found
        if name != "minikto"
        and name not in sys.stdlib_module_names
        and DISTRIBUTION.get(name, name).lower() not in required
    )
    assert not missing, f"{path.name} imports {missing}, which pip install '.[notebooks]' lacks"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_every_committed_figure_is_at_most_10_inches_wide(path):
    # the inline backend draws 100 pixels per inch (the notebooks' figure.dpi); a legend
    # moved outside the axes must stay inside the figure, not widen it
    nb = nbformat.read(path, as_version=4)
    widths = [
        int.from_bytes(base64.b64decode(output["data"]["image/png"])[16:20], "big")
        for cell in _code(nb)
        for output in cell.get("outputs", [])
        if "image/png" in output.get("data", {})
    ]
    assert all(width <= 1000 for width in widths), (path.name, widths)
