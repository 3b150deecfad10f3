"""What every experiment shares: seeds, one row per run, aggregation, CSV, markdown, files.

An experiment is a function ``run(seeds, quick) -> ExperimentResult``. It trains many small
policies, turns each finished run into one flat ``dict`` row (exact utility and KL come from
:class:`~minikto.exact.ExactEvaluator`, through :func:`~minikto.training.train.train`'s summary),
aggregates the rows of each condition over seeds (mean, sample standard deviation, min,
max), and draws one figure. :func:`write_outputs` then writes its directory:

- ``runs.csv``: every run, one row each (the raw numbers behind everything else);
- ``table.md``: the aggregated table (mean ± std over seeds);
- ``results_<name>.png``: the figure;
- ``section.md``: the experiment's section of ``docs/RESULTS.md`` (claim, design, command,
  table, figure, verdict);
- ``summary.json``: the aggregated rows and how the run was made.

:func:`update_results_md` splices a ``section.md`` into ``docs/RESULTS.md`` between its
markers, so each command regenerates its own section and leaves everything else in the file
(the other sections and any text written by hand outside the markers) as it was.
:func:`pick` finds one aggregated row by its condition; :func:`progress` reports how far an
experiment has got (``minikto experiment`` prints it on stderr).
"""

from __future__ import annotations

import csv
import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._brief import brief
from ..data.atomic import atomic_write
from ..tools.plots import save_figure

__all__ = [
    "DEFAULT_SEEDS",
    "ExperimentResult",
    "aggregate",
    "check_seeds",
    "fmt",
    "markdown_table",
    "mean_std",
    "mean_std_cell",
    "pick",
    "progress",
    "section_markdown",
    "std_or_zero",
    "train_row",
    "update_results_md",
    "write_csv",
    "write_outputs",
]

#: Seeds of a full-size run (seeds 0, 1, ..., DEFAULT_SEEDS - 1).
DEFAULT_SEEDS = 5
#: Seeds of a ``quick`` run (the reduced size the tests use).
QUICK_SEEDS = 2


@dataclass
class ExperimentResult:
    """What an experiment returns; :func:`write_outputs` turns it into files."""

    name: str  #: the registry name, e.g. "imbalance"
    title: str  #: the section title in RESULTS.md
    claim: str  #: the paper's claim, citing its section, equation or proposition (markdown)
    design: str  #: how the toy tests it (markdown)
    rows: list[dict[str, Any]]  #: one per training run (-> runs.csv)
    table: list[dict[str, Any]]  #: aggregated rows (-> summary.json)
    table_md: str  #: the aggregated table in markdown (-> table.md)
    figure: Any  #: a matplotlib Figure (-> results_<name>.png)
    verdict: str  #: does the toy agree with the paper, computed from the table (markdown)
    seeds: int  #: how many seeds each condition ran
    quick: bool  #: True for the reduced test size
    seconds: float = 0.0  #: wall time of the experiment
    extra: dict[str, Any] = field(default_factory=dict)  #: anything else worth keeping


# ------------------------------------------------------------------------------------------
# Seeds and statistics


def check_seeds(seeds: Any) -> int:
    """``seeds`` as an int >= 1, or a ValueError naming it."""
    if isinstance(seeds, bool) or not isinstance(seeds, (int, np.integer)) or seeds < 1:
        raise ValueError(f"seeds: expected an int >= 1; got {brief(seeds)}")
    return int(seeds)


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof = 1; NaN for a single value)."""
    arr = np.asarray(values, dtype=np.float64)
    std = float(np.std(arr, ddof=1)) if arr.size > 1 else math.nan
    return float(np.mean(arr)), std


def aggregate(
    rows: Sequence[dict[str, Any]], by: Sequence[str], metrics: Sequence[str]
) -> list[dict[str, Any]]:
    """One row per distinct value of the ``by`` columns, in order of first appearance.

    Each output row holds the ``by`` values, ``n`` (the runs aggregated) and, for every
    metric ``m``, ``m_mean``, ``m_std`` (ddof = 1), ``m_min`` and ``m_max``. Missing or None
    values of a metric are skipped.
    """
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(tuple(row[k] for k in by), []).append(row)
    out = []
    for key, members in groups.items():
        agg: dict[str, Any] = dict(zip(by, key, strict=True))
        agg["n"] = len(members)
        for m in metrics:
            values = [r[m] for r in members if r.get(m) is not None]
            if values:
                agg[f"{m}_mean"], agg[f"{m}_std"] = mean_std(values)
                agg[f"{m}_min"], agg[f"{m}_max"] = float(np.min(values)), float(np.max(values))
            else:
                agg[f"{m}_mean"] = agg[f"{m}_std"] = agg[f"{m}_min"] = agg[f"{m}_max"] = None
        out.append(agg)
    return out


def std_or_zero(value: float | None) -> float:
    """A standard deviation for an error bar: 0 where it is undefined (one seed, no data)."""
    return 0.0 if value is None or math.isnan(value) else float(value)


def fmt(value: float | None, digits: int = 3, *, signed: bool = False) -> str:
    """A number for a table: fixed digits, scientific below 1e-3, "n/a" for None/NaN."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if value != 0 and abs(value) < 10.0 ** (-digits):
        return f"{value:.1e}"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def mean_std_cell(metric: str, digits: int = 3, *, signed: bool = False) -> Callable[[dict], str]:
    """A column formatter: ``mean ± std`` of ``metric`` in an :func:`aggregate` row."""

    def cell(row: dict[str, Any]) -> str:
        mean, std = row.get(f"{metric}_mean"), row.get(f"{metric}_std")
        if mean is None:
            return "n/a"
        if std is None or math.isnan(std):
            return fmt(mean, digits, signed=signed)
        return f"{fmt(mean, digits, signed=signed)} ± {fmt(std, digits)}"

    return cell


def markdown_table(
    rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str | Callable[[dict], str]]]
) -> str:
    """A GitHub markdown table; each column is (header, key of the row or a formatter)."""
    lines = [
        "| " + " | ".join(h for h, _ in columns) + " |",
        "|" + "|".join("---" for _ in columns) + "|",
    ]
    for row in rows:
        cells = [col(row) if callable(col) else str(row[col]) for _, col in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def pick(table: Sequence[dict[str, Any]], **condition: Any) -> dict[str, Any]:
    """The one row of an :func:`aggregate` table whose columns equal ``condition``."""
    for row in table:
        if all(row.get(k) == v for k, v in condition.items()):
            return row
    raise KeyError(f"no row with {condition} in the table")


#: Where :func:`progress` sends its lines (set by ``run_experiment(progress=...)``).
_REPORT: list[Callable[[str], None]] = []


def progress(message: str) -> None:
    """Report how far the running experiment has got (a no-op unless someone listens)."""
    for report in _REPORT:
        report(message)


# ------------------------------------------------------------------------------------------
# One training run -> one row


def train_row(result: Any) -> dict[str, Any]:
    """The exact numbers of a finished :func:`~minikto.training.train.train` run, as a flat row.

    ``utility`` and ``utility_reference`` are exact expected utilities of the trained policy
    and of the reference; ``kl`` the exact ``KL(pi || pi_ref)``; ``desirable_mass`` the
    probability of a response with utility > 0 (all averaged over prompts).
    """
    s = result.summary
    return {
        "utility": s["expected_utility"]["final"],
        "utility_reference": s["expected_utility"]["reference"],
        "utility_best": s["expected_utility"]["best_possible"],
        "kl": s["kl_to_reference"],
        "desirable_mass": s["desirable_mass"]["final"],
        "final_loss": s["final_loss"],
        "seconds": s["seconds"],
    }


# ------------------------------------------------------------------------------------------
# Files


def write_csv(path: str | Path, rows: Sequence[dict[str, Any]]) -> None:
    """Rows of dicts as CSV; the columns are every key, in order of first appearance."""
    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(row))
    with atomic_write(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(columns))
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if row.get(k) is None else row[k]) for k in columns})


def section_markdown(result: ExperimentResult, command: str) -> str:
    """The experiment's section of RESULTS.md (between its markers)."""
    return "\n".join(
        [
            _begin(result.name),
            f"## {result.title}",
            "",
            f"**The paper's claim.** {result.claim}",
            "",
            f"**The toy's design.** {result.design}",
            "",
            f"**Command.** `{command}` ({result.seeds} seeds; {result.seconds:.0f} s of wall "
            "time on the 2-core machine that produced this section). The numbers are a "
            "deterministic function of the seeds; `--write-docs` regenerates this section.",
            "",
            f"Mean ± sample standard deviation over {result.seeds} seeds "
            "(the raw numbers of every run are in `runs.csv`).",
            "",
            result.table_md,
            "",
            f"![{result.title}](figures/results_{result.name}.png)",
            "",
            f"**Does the toy agree with the paper?** {result.verdict}",
            _end(result.name),
        ]
    )


def write_outputs(result: ExperimentResult, out_dir: str | Path, *, command: str) -> Path:
    """Write runs.csv, table.md, the figure, section.md and summary.json into ``out_dir``."""
    out = Path(out_dir)
    write_csv(out / "runs.csv", result.rows)
    with atomic_write(out / "table.md", "w", encoding="utf-8") as f:
        f.write(result.table_md + "\n")
    save_figure(result.figure, out / f"results_{result.name}.png")
    with atomic_write(out / "section.md", "w", encoding="utf-8") as f:
        f.write(section_markdown(result, command) + "\n")
    summary = {
        "name": result.name,
        "command": command,
        "seeds": result.seeds,
        "quick": result.quick,
        "seconds": result.seconds,
        "table": result.table,
        "verdict": result.verdict,
        **result.extra,
    }
    with atomic_write(out / "summary.json", "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=2, default=float)
    return out


_HEADER = """# What the toy says about the paper's claims

Generated by `minikto experiment NAME --write-docs` (each command rewrites its own section,
between its markers; `minikto experiment all --out results --write-docs` rewrites them all).
Do not edit the sections by hand: change the experiment in `minikto/experiments/` and rerun.

Every experiment trains small softmax policies on the default toy
(`minikto.data.toy.default_task`: 12 words, 5 prompts, responses of up to 3 tokens) from its
base policy, the reference: Adam at learning rate 0.05, beta = 0.1, 600 steps, batches of
32 (the defaults of `KTOConfig` but for the steps) unless its design says otherwise.
Every utility and KL below is EXACT: the toy's response space is enumerated
(`minikto.ExactEvaluator`), so the expected hidden utility and `KL(pi || pi_ref)` carry no
sampling noise; the spread across seeds comes from the data and the batch order only.
Seed s draws the data and the batches of every run of that seed. Each experiment directory
(`results/NAME/`) also holds `runs.csv`, one row per training run.

The toy is a toy: 12 words and 5 prompts. Where it disagrees with the paper, the section
says so; nothing was tuned to make it agree.
"""


def _begin(name: str) -> str:
    return f"<!-- BEGIN experiment {name} (generated; do not edit) -->"


def _end(name: str) -> str:
    return f"<!-- END experiment {name} -->"


def update_results_md(
    docs_dir: str | Path, name: str, section: str, order: Sequence[str]
) -> Path:
    """Put ``section`` (from :func:`section_markdown`) into ``docs_dir/RESULTS.md``.

    In an existing file only the block of ``name`` (between its markers) is replaced; a
    block not there yet goes before the next experiment of ``order`` that is there (or at
    the end). Everything else, text written by hand included, is kept byte for byte. A new
    file is the header followed by one block per experiment in ``order`` ("not run yet"
    for the others). The file is replaced atomically.
    """
    if name not in order:
        raise ValueError(f"name: expected one of {list(order)}; got {brief(name)}")
    if not (section.startswith(_begin(name)) and section.rstrip().endswith(_end(name))):
        raise ValueError(f"section: expected a block between the markers of {brief(name)}")
    path = Path(docs_dir) / "RESULTS.md"
    block = section.rstrip()
    if path.exists():
        text = _splice(path.read_bytes().decode("utf-8"), name, block, order)
    else:
        blocks = {
            other: f"{_begin(other)}\n## {other}\n\nNot run yet: `minikto experiment {other} "
            f"--write-docs`.\n{_end(other)}"
            for other in order
        }
        blocks[name] = block
        text = _HEADER + "\n" + "\n\n".join(blocks[k] for k in order) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path, "w", encoding="utf-8", newline="") as f:
        f.write(text)
    return path


def _block(name: str) -> re.Pattern[str]:
    return re.compile(re.escape(_begin(name)) + r".*?" + re.escape(_end(name)), flags=re.DOTALL)


def _splice(text: str, name: str, block: str, order: Sequence[str]) -> str:
    """``text`` with the block of ``name`` replaced (or inserted); nothing else changes."""
    match = _block(name).search(text)
    if match:
        return text[: match.start()] + block + text[match.end():]
    for later in order[order.index(name) + 1:]:
        after = _block(later).search(text)
        if after:
            return text[: after.start()] + block + "\n\n" + text[after.start():]
    return text.rstrip("\n") + "\n\n" + block + "\n"
