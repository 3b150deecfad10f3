"""Regenerate every notebook in notebooks/ with its outputs: ``python scripts/run_notebooks.py``.

Each ``notebooks/[0-9]*.ipynb`` is executed top to bottom, in file-name order, in a fresh
kernel whose working directory is ``notebooks/``, and written back in place with its outputs
and figures. A code cell whose metadata holds ``"docs_figure": "NAME.png"`` also has its
(last) PNG output saved as ``docs/figures/NAME.png``, the figure the README shows.

Before running, each notebook's links are written from ``pyproject.toml``'s
``[project.urls] Repository`` (the single source of the repository's address): the "Open in
Colab" and Binder badges on the line after the ``<!-- links: ... -->`` marker of the first cell,
and the ``REPOSITORY = ...`` line of the install cell (the code cell holding that line), which
installs the ``minikto`` package alone from the repository, only where ``import minikto``
fails. A notebook cannot read pyproject.toml on Colab, hence the links are generated here, at
build time. While the address is marked as a placeholder (the Repository line ends with the
comment ``# placeholder``), no badge is shown: the line after the marker says how to run the
notebook from a clone instead, and the install cell gets ``REPOSITORY = None``. Removing the
comment (with a real address) brings the badges back at the next regeneration.

The kernel runs on THIS Python interpreter (the native ipykernel spec of the running
environment), whatever kernels are installed elsewhere: ``ipykernel`` must be importable,
nothing has to be registered with ``jupyter kernelspec``. ``tests/test_notebooks.py`` runs the
notebooks through the same :func:`execute_notebook`.

Options: ``python scripts/run_notebooks.py [NOTEBOOK ...] [--timeout SECONDS] [--check]
[--budget SECONDS]``; ``--check`` executes without writing anything (a dry run of the
regeneration); ``--budget`` fails a notebook that takes longer than that, kernel start included
(CI runs ``--check --budget 90`` in an environment holding only ``.[notebooks]``).
"""

from __future__ import annotations

import argparse
import base64
import re
import sys
import time
from pathlib import Path

import nbformat
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK_DIR = ROOT / "notebooks"
FIGURE_DIR = ROOT / "docs" / "figures"
CELL_TIMEOUT = 300  # seconds per cell; every notebook is meant to finish in under 60 s
LINKS_MARKER = "<!-- links: written by scripts/run_notebooks.py from pyproject.toml -->"
BADGE = "[![Open In Colab]"
REPOSITORY_LINE = re.compile(r'^REPOSITORY = (?:None|"[^"]*")', re.MULTILINE)
#: What the first cell says instead of the badges while the address is a placeholder.
UNPUBLISHED = (
    '*To run this notebook: clone the repository, `pip install ".[notebooks]"` in '
    "it and open the notebook there (Colab and Binder links appear here once the "
    "project is published at its own address).*"
)


def _repository_line(pyproject: Path) -> re.Match:
    text = pyproject.read_text(encoding="utf-8")
    section = re.search(r"^\[project\.urls\]\s*$(.*?)(?=^\[|\Z)", text, re.M | re.S)
    found = section and re.search(
        r'^Repository\s*=\s*"([^"]+)"[ \t]*(#.*)?$', section.group(1), re.M
    )
    if not found:
        raise ValueError(f"{pyproject}: expected a Repository entry under [project.urls]")
    return found


def repository_url(pyproject: Path = ROOT / "pyproject.toml") -> str:
    """``[project.urls] Repository`` of ``pyproject.toml``: ``https://github.com/OWNER/NAME``."""
    url = _repository_line(pyproject).group(1).rstrip("/")
    if not re.fullmatch(r"https://github\.com/[\w.-]+/[\w.-]+", url):
        raise ValueError(
            f"{pyproject}: expected Repository = https://github.com/OWNER/NAME; got {url!r}"
        )
    return url


def is_placeholder(pyproject: Path = ROOT / "pyproject.toml") -> bool:
    """Whether the Repository line is marked ``# placeholder`` (not published there yet)."""
    comment = _repository_line(pyproject).group(2) or ""
    return comment.lstrip("#").strip().lower().startswith("placeholder")


def badges(url: str, notebook: str) -> str:
    """The Colab and Binder badges of ``notebooks/<notebook>`` in the repository ``url``."""
    slug = url.removeprefix("https://github.com/")
    colab = f"https://colab.research.google.com/github/{slug}/blob/main/notebooks/{notebook}"
    binder = f"https://mybinder.org/v2/gh/{slug}/main?labpath=notebooks%2F{notebook}"
    return (
        f"{BADGE}(https://colab.research.google.com/assets/colab-badge.svg)]({colab}) "
        f"[![Binder](https://mybinder.org/badge_logo.svg)]({binder})"
    )


def install_cell(nb: nbformat.NotebookNode, notebook: str) -> nbformat.NotebookNode:
    """The guarded install cell of ``nb``: the code cell holding ``REPOSITORY = ...``."""
    for cell in nb.cells:
        if cell.cell_type == "code" and REPOSITORY_LINE.search(cell.source):
            if "except ImportError" in cell.source:
                return cell
    raise ValueError(
        f"{notebook}: it needs the guarded install cell (REPOSITORY = ... and `except ImportError`)"
    )


def sync_links(
    nb: nbformat.NotebookNode, notebook: str, url: str, *, published: bool = True
) -> None:
    """Write the badges (or, unpublished, how to run from a clone) and the install cell's
    ``REPOSITORY`` for ``url`` into ``nb``."""
    first = nb.cells[0]
    lines = first.source.split("\n")
    if first.cell_type != "markdown" or LINKS_MARKER not in lines:
        raise ValueError(
            f"{notebook}: its first cell must be markdown with the line {LINKS_MARKER}"
        )
    at = lines.index(LINKS_MARKER) + 1
    if at < len(lines) and lines[at].startswith((BADGE, UNPUBLISHED[:24])):
        del lines[at]
    lines.insert(at, badges(url, notebook) if published else UNPUBLISHED)
    first.source = "\n".join(lines)
    install = install_cell(nb, notebook)
    value = f'"{url}"' if published else "None"
    install.source = REPOSITORY_LINE.sub(f"REPOSITORY = {value}", install.source)


def notebook_paths(directory: Path = NOTEBOOK_DIR) -> list[Path]:
    """The notebooks to run, in order: ``[0-9]*.ipynb`` in ``directory``."""
    return sorted(directory.glob("[0-9]*.ipynb"))


def execute_notebook(nb: nbformat.NotebookNode, cwd: Path, *, timeout: int = CELL_TIMEOUT) -> float:
    """Execute ``nb`` in memory, top to bottom, with ``cwd`` as working directory.

    A cell that raises stops the run with ``nbclient.exceptions.CellExecutionError``.
    Returns the wall-clock seconds, kernel start included.
    """
    # An empty kernel search path leaves only the native "python3" kernel of this
    # interpreter, so a stale user-level kernelspec cannot run the notebooks elsewhere.
    manager = KernelManager(
        kernel_name="python3", kernel_spec_manager=KernelSpecManager(kernel_dirs=[])
    )
    client = NotebookClient(
        nb,
        km=manager,
        timeout=timeout,
        record_timing=False,  # no timestamps in the committed files
        resources={"metadata": {"path": str(cwd)}},
    )
    start = time.perf_counter()
    try:
        client.execute()
    finally:
        if manager.has_kernel:
            manager.shutdown_kernel(now=True)
    return time.perf_counter() - start


def cell_errors(nb: nbformat.NotebookNode) -> list[str]:
    """One line per error output left in the notebook (empty when every cell ran cleanly)."""
    found = []
    for index, cell in enumerate(nb.cells):
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                found.append(f"cell {index}: {output.get('ename')}: {output.get('evalue')}")
    return found


def docs_figures(nb: nbformat.NotebookNode) -> dict[str, bytes]:
    """The PNG of every cell tagged with ``docs_figure`` metadata, by file name."""
    figures = {}
    for cell in nb.cells:
        name = cell.get("metadata", {}).get("docs_figure")
        if not name:
            continue
        pngs = [
            o["data"]["image/png"]
            for o in cell.get("outputs", [])
            if "image/png" in o.get("data", {})
        ]
        if not pngs:
            raise ValueError(f"docs_figure {name}: its cell produced no PNG output")
        figures[name] = base64.b64decode(pngs[-1])
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "notebooks",
        nargs="*",
        type=Path,
        help="notebooks to run (default: every notebooks/[0-9]*.ipynb)",
    )
    parser.add_argument(
        "--timeout",
        type=int,
        default=CELL_TIMEOUT,
        help=f"seconds allowed per cell (default {CELL_TIMEOUT})",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="execute only; write neither the notebooks nor the figures",
    )
    parser.add_argument(
        "--budget",
        type=float,
        default=None,
        help="fail when a notebook takes longer than this many seconds",
    )
    args = parser.parse_args(argv)
    paths = args.notebooks or notebook_paths()
    if not paths:
        print(f"no notebooks found in {NOTEBOOK_DIR}", file=sys.stderr)
        return 1
    url, published = repository_url(), not is_placeholder()
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        sync_links(nb, path.name, url, published=published)
        seconds = execute_notebook(nb, path.resolve().parent, timeout=args.timeout)
        errors = cell_errors(nb)
        if errors:
            print(f"{path}: cells left errors: {errors}", file=sys.stderr)
            return 1
        figures = docs_figures(nb)
        if args.budget is not None and seconds > args.budget:
            print(
                f"{path}: took {seconds:.1f} s, over the budget of {args.budget:g} s",
                file=sys.stderr,
            )
            return 1
        if not args.check:
            nbformat.write(nb, path)
            FIGURE_DIR.mkdir(parents=True, exist_ok=True)
            for name, png in figures.items():
                (FIGURE_DIR / name).write_bytes(png)
        written = "checked" if args.check else "written"
        extra = f", figures {sorted(figures)}" if figures else ""
        shown = path.resolve().relative_to(ROOT) if path.resolve().is_relative_to(ROOT) else path
        print(f"{shown}: {seconds:.1f} s, {written}{extra}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
