"""The paper's claims reproduced on the toy: one module per experiment.

=================  =====================================================================
name               what it trains and measures
=================  =====================================================================
imbalance          KTO with 100/50/20/10 % of the desirable examples, lambda_D from Eq. 8
                   against lambda_D = 1 (and DPO as the yardstick)
noise              0-40 % flipped labels; KTO on the unpaired form of the very pairs DPO
                   trains on
contradiction      Thm. 4.3: each (x, y) once desirable, once undesirable; KTO does not
                   move, DPO can push both responses down
minority           Thm. 4.3 with unequal shares p: DPO's optimum can prefer the minority
                   response, KTO moves to the majority
one-y-per-x        KTO on one response per prompt against KTO on both and DPO on the pairs
reference-point    the five z0 modes: stability, utility against KL, how often the batch
                   estimate is clamped, how far it is from the exact KL
frontier           exact utility against exact KL across beta for KTO, DPO and SFT
family             every loss minikto trains (TRL's 13 DPO loss types, SimPO, ORPO, KTO,
                   BCO) at its best beta; HALOs against non-HALOs
skip-sft           KTO and DPO from the base policy with and without an SFT stage: utility
                   and the mass on responses that never end
=================  =====================================================================

Every experiment is ``run(seeds=5, quick=False) -> ExperimentResult`` (see
:mod:`minikto.experiments.common`); :func:`run_experiment` runs one by name and writes its
directory, and ``minikto experiment NAME`` is the command line for it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from .._brief import brief
from ..data.atomic import atomic_write
from ..data.files import read_user_bytes
from ..training.rundir import open_folder
from . import (
    common,
    contradiction,
    family,
    frontier,
    imbalance,
    minority,
    noise,
    one_y_per_x,
    reference_point,
    skip_sft,
)
from .common import (
    DEFAULT_SEEDS,
    QUICK_SEEDS,
    ExperimentResult,
    check_seeds,
    section_markdown,
    update_results_md,
    write_outputs,
)

__all__ = ["DEFAULT_SEEDS", "EXPERIMENTS", "QUICK_SEEDS", "ExperimentResult", "check_docs",
           "run_experiment"]

#: name -> ``run(seeds, quick)``, in the order of docs/RESULTS.md.
EXPERIMENTS: dict[str, Callable[..., ExperimentResult]] = {
    "imbalance": imbalance.run,
    "noise": noise.run,
    "contradiction": contradiction.run,
    "minority": minority.run,
    "one-y-per-x": one_y_per_x.run,
    "reference-point": reference_point.run,
    "frontier": frontier.run,
    "family": family.run,
    "skip-sft": skip_sft.run,
}


def command_line(name: str, seeds: int, quick: bool) -> str:
    """The ``minikto experiment`` command that reproduces a run's numbers."""
    cmd = f"minikto experiment {name}"
    if quick:
        cmd += " --quick"
    default = QUICK_SEEDS if quick else DEFAULT_SEEDS
    if seeds != default:
        cmd += f" --seeds {seeds}"
    return cmd


def run_experiment(
    name: str,
    out_dir: str | Path,
    *,
    seeds: int | None = None,
    quick: bool = False,
    overwrite: bool = False,
    docs_dir: str | Path | None = None,
    progress: Callable[[str], None] | None = None,
    overwrite_docs: bool | None = None,
) -> ExperimentResult:
    """Run experiment ``name`` and write its files into ``out_dir`` (created).

    Parameters
    ----------
    name : str
        A key of :data:`EXPERIMENTS`.
    out_dir : path
        The experiment's directory; an existing non-empty one needs ``overwrite=True``.
    seeds : int, optional
        Seeds 0 .. seeds-1 (default :data:`DEFAULT_SEEDS`, or :data:`QUICK_SEEDS` when
        ``quick``).
    quick : bool
        The reduced size the tests use (fewer seeds, steps and conditions).
    overwrite : bool
        Replace an existing ``out_dir`` written by minikto (a folder holding anything else is
        refused); the new results are written beside it and swapped in once complete.
    docs_dir : path, optional
        Also regenerate this experiment's section of ``docs_dir/RESULTS.md`` and copy its
        figure to ``docs_dir/figures/results_<name>.png``. Refused for a quick run or
        fewer than 3 seeds: the docs hold full-size numbers only. Text outside the
        experiment's markers is kept. Checked before the experiment runs (see
        :func:`check_docs`): ``RESULTS.md`` must be readable UTF-8, and an existing figure
        is replaced only with ``overwrite_docs``.
    progress : callable, optional
        Called with a short line (``"imbalance: seed 2/5"``) as the experiment goes.
    overwrite_docs : bool, optional
        Replace an existing ``docs_dir/figures/results_<name>.png`` (default: ``overwrite``).

    Returns
    -------
    ExperimentResult
        With ``seconds`` set to the wall time of the experiment.
    """
    if name not in EXPERIMENTS:
        raise ValueError(f"name: expected one of {list(EXPERIMENTS)}; got {brief(name)}")
    seeds = check_seeds(QUICK_SEEDS if quick else DEFAULT_SEEDS) if seeds is None else seeds
    seeds = check_seeds(seeds)
    if docs_dir is not None and (quick or seeds < 3):
        raise ValueError(
            "docs_dir: expected a full-size run (not quick, at least 3 seeds) to write "
            f"docs/RESULTS.md; got quick={quick}, seeds={seeds}"
        )
    if docs_dir is not None:
        check_docs(docs_dir, [name], argument="docs_dir",
                   overwrite=overwrite if overwrite_docs is None else overwrite_docs)
    folder = open_folder(out_dir, kind="experiment", overwrite=overwrite, argument="out")
    try:
        folder.claim([*OUTPUT_FILES, f"results_{name}.png"])
        started = time.perf_counter()
        if progress is not None:
            common._REPORT.append(lambda line: progress(f"{name}: {line}"))
        try:
            result = EXPERIMENTS[name](seeds=seeds, quick=quick)
        finally:
            common._REPORT.clear()
        result.seconds = time.perf_counter() - started
        command = command_line(name, seeds, quick)
        write_outputs(result, folder.work, command=command)
    except BaseException:
        folder.abandon()
        raise
    out = folder.finish()
    if docs_dir is not None:
        figures = Path(docs_dir) / "figures"
        figures.mkdir(parents=True, exist_ok=True)
        figure = f"results_{name}.png"
        with atomic_write(figures / figure, "wb") as f:
            f.write((out / figure).read_bytes())
        update_results_md(
            docs_dir, name, section_markdown(result, command), order=list(EXPERIMENTS)
        )
    return result


#: What an experiment writes into its folder (besides its figure ``results_<name>.png``).
OUTPUT_FILES = ("runs.csv", "table.md", "section.md", "summary.json")


def check_docs(
    docs_dir: str | Path,
    names: list[str],
    *,
    overwrite: bool = False,
    argument: str = "--docs",
    confirm: Callable[[list[Path]], bool] | None = None,
) -> None:
    """Refuse, before anything runs, what would make ``--write-docs`` fail or replace a file
    unasked: a ``RESULTS.md`` that is not readable UTF-8, and (without ``overwrite``, unless
    ``confirm(paths)`` says yes) an existing ``figures/results_<name>.png``.
    """
    docs = Path(docs_dir)
    results = docs / "RESULTS.md"
    if results.exists():
        raw = read_user_bytes(results, name=argument)
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as err:
            raise ValueError(
                f"{argument}: {results} is not readable UTF-8 (byte {err.start + 1} is "
                f"0x{raw[err.start]:02x}); save it as UTF-8 first: the experiment's section is "
                "written into it after the run"
            ) from None
    existing = [docs / "figures" / f"results_{n}.png" for n in names]
    existing = [f for f in existing if f.exists() or f.is_symlink()]
    if existing and not overwrite and not (confirm is not None and confirm(existing)):
        shown = ", ".join(map(str, existing[:3])) + (" ..." if len(existing) > 3 else "")
        raise FileExistsError(
            f"{argument}: writing the docs would replace {shown}; pass overwrite=True "
            "(--overwrite) to replace them"
        )
