"""The ``minikto`` command: ``demo``, ``train``, ``gradcheck``, ``data``, ``vectors``,
``experiment``, ``check``.

Each subcommand is a small function taking the parsed arguments and returning an exit code.
"""

from __future__ import annotations

import argparse
import errno
import json
import shlex
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from .._brief import brief
from ..training.config import field_names
from . import flags
from .flags import z0_value as _z0_value


def _cmd_gradcheck(args: argparse.Namespace) -> int:
    from ..gradcheck import format_table, run_selfcheck
    from ..training.family_objective import family_selfcheck

    rows = run_selfcheck(args.backend, rtol=args.rtol)
    rows += family_selfcheck(args.backend, rtol=args.rtol)
    print(
        f"minikto gradcheck: every training objective against central finite differences "
        f"(float64, h = 1e-6, backend {args.backend}, pass: err/bound <= 1"
        + (f" or rel <= {args.rtol:g})" if args.rtol > 0 else ", the bound of docs/CHECK.md)")
    )
    print(format_table(rows))
    failed = [r for r in rows if not r.report.passed]
    print(f"\n{len(rows) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


def _cmd_demo(args: argparse.Namespace) -> int:
    import matplotlib

    matplotlib.use("Agg")
    from .demo import run_demo

    out = args.out if args.out is not None else time.strftime("runs/demo-%Y%m%d-%H%M%S")
    run_demo(out, seed=args.seed, overwrite=args.overwrite, max_steps=args.max_steps,
             quiet=getattr(args, "quiet", False), command=getattr(args, "command_line", None))
    return 0


def _cmd_data(args: argparse.Namespace) -> int:
    from ..data.feedback import sample_paired, sample_unpaired
    from ..data.jsonl import write_paired, write_unpaired
    from ..data.toy import bandit_task, default_task
    from ..training.memory import check_memory

    task = bandit_task() if args.task == "bandit" else default_task()
    out = Path(args.out)
    if out.is_symlink() and not out.exists():
        raise FileNotFoundError(
            f"--out: {out} is a symbolic link to {out.resolve()}, which does not exist; "
            "minikto writes through a link only to an existing file"
        )
    if out.exists() and not args.overwrite:
        print(f"minikto data: {out} exists; pass --overwrite to replace it", file=sys.stderr)
        return 2
    if isinstance(args.n, int) and args.n > 0:
        check_memory(task, n=args.n, paired=args.paired, n_flag="--n")
    if args.paired:
        data = sample_paired(task, args.n, seed=args.seed, label_noise=args.label_noise)
        write_paired(out, data, task)
        print(f"wrote {len(data)} pairs (prompt, chosen, rejected) to {out}")
    else:
        data = sample_unpaired(
            task,
            args.n,
            seed=args.seed,
            label_noise=args.label_noise,
            desirable_fraction=args.desirable_fraction,
            one_per_prompt=args.one_per_prompt,
        )
        write_unpaired(out, data, task)
        print(
            f"wrote {len(data)} examples (prompt, completion, label) to {out}: "
            f"{int(data.desirable.sum())} desirable, {int((~data.desirable).sum())} undesirable"
        )
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    import matplotlib

    matplotlib.use("Agg")
    from ..data.feedback import sample_paired, sample_unpaired
    from ..data.toy import bandit_task, default_task
    from ..data.trl_formats import read_for_training
    from ..exact import ExactEvaluator
    from ..training.config import PAIRED_LOSSES, KTOConfig
    from ..training.memory import check_memory
    from ..training.rundir import add_to_manifest
    from ..training.train import train
    from .plots import plot_policy_before_after, plot_training_curves, save_figure

    fields = KTOConfig.from_file(args.config).to_dict() if args.config else {}
    for name in _CONFIG_FLAGS:
        value = getattr(args, name)
        if value is not None:
            fields[name] = value
    if isinstance(fields.get("z0"), str):
        fields["z0"] = _z0_value(fields["z0"])
    if isinstance(fields.get("features"), str) and fields["features"] != "onehot":
        try:
            fields["features"] = int(fields["features"])
        except ValueError:
            raise ValueError(
                f"--features: expected 'onehot' or a positive int width; "
                f"got {brief(fields['features'])}"
            ) from None
    config = KTOConfig.from_dict(fields)
    if args.overwrite and args.resume:
        raise ValueError(
            "--overwrite, --resume: expected at most one: --resume continues the run in --out, "
            "--overwrite replaces it; got both"
        )
    task = bandit_task() if args.task == "bandit" else default_task()
    paired = config.loss in PAIRED_LOSSES
    check_memory(task, n=None if args.data is not None or args.n < 1 else args.n,
                 paired=paired, features=config.features, batch_size=config.batch_size,
                 n_flag="--n", features_flag="--features")
    if args.data is not None:
        data, notes = read_for_training(args.data, task, paired=paired)
        for note in notes:
            print(f"minikto train: {note}", file=sys.stderr)
        source = {"path": str(args.data), "sha256": _file_sha256(args.data)}
    else:
        if paired:
            data = sample_paired(task, args.n, seed=config.seed)
        else:
            data = sample_unpaired(task, args.n, seed=config.seed)
        source = {"task": args.task, "n": args.n, "seed": config.seed}
    result = train(
        task, data, config, out_dir=args.out, overwrite=args.overwrite, resume=args.resume,
        data_source=source, command=getattr(args, "command_line", None) or sys.argv,
        quiet=getattr(args, "quiet", False),
    )
    evaluator = ExactEvaluator(task, result.reference)
    figures = Path(result.run_dir) / "figures"
    add_to_manifest(result.run_dir, [f"figures/{n}" for n in _TRAIN_FIGURES])
    figures.mkdir(exist_ok=True)
    save_figure(plot_training_curves(result.history, result.evals), figures / _TRAIN_FIGURES[0])
    save_figure(
        plot_policy_before_after(task, evaluator, result.reference, result.policy),
        figures / _TRAIN_FIGURES[1],
    )
    if not getattr(args, "quiet", False):
        print(json.dumps(result.summary, indent=2))
    return 0


#: The figures ``minikto train`` writes into the run's ``figures/`` folder.
_TRAIN_FIGURES = ("training_curves.png", "policy_before_after.png")


def _file_sha256(path: str) -> str:
    """The sha256 of a file (read in blocks; the dataset reader has already bounded it)."""
    import hashlib

    from ..data.files import open_user_file

    digest = hashlib.sha256()
    with open_user_file(path, name="--data") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _cmd_vectors(args: argparse.Namespace) -> int:
    from .vectors import write_vectors
    from .vectors_check import check_vectors

    if args.check:
        if args.out:
            raise ValueError(
                "--out: expected no --out with --check (--check reads a file and writes "
                "nothing); run `minikto vectors --out FILE` on its own to write one"
            )
        failures = check_vectors(args.check)
        for line in failures:
            print(line)
        print(f"{args.check}: {'FAILED' if failures else 'all cases agree with minikto'}")
        return 1 if failures else 0
    if not args.out:
        raise ValueError("--out: expected the JSON file to write (or --check FILE)")
    out = Path(args.out)
    if out.is_dir():
        raise IsADirectoryError(f"--out: expected a file name; got the directory {out}")
    if (out.exists() or out.is_symlink()) and not args.overwrite:
        print(f"minikto vectors: {out} exists; pass --overwrite to replace it", file=sys.stderr)
        return 2
    print(f"wrote {write_vectors(out)}")
    return 0


def _cmd_experiment(args: argparse.Namespace) -> int:
    import matplotlib

    matplotlib.use("Agg")
    from ..experiments import EXPERIMENTS, run_experiment

    names = list(EXPERIMENTS) if args.name == "all" else [args.name]
    out = Path(args.out)
    docs = Path(args.docs) if args.write_docs else None
    if docs is not None and (args.quick or (args.seeds is not None and args.seeds < 3)):
        raise ValueError(
            "--write-docs: expected a full-size run (no --quick, --seeds >= 3); docs/RESULTS.md "
            "holds full-size numbers only"
        )
    from ..experiments import check_docs
    from ..training.rundir import open_folder

    if docs is not None:  # before anything runs: RESULTS.md readable, no figure replaced unasked
        check_docs(docs, names, overwrite=args.overwrite, argument="--docs",
                   confirm=None if getattr(args, "quiet", False) else _confirm)
    for name in names:  # refuse before anything runs, so `all` never stops half-way
        open_folder(out / name, kind="experiment", overwrite=args.overwrite, argument="--out",
                    dry_run=True)
    quiet = getattr(args, "quiet", False)

    def progress(line: str) -> None:
        if not quiet:
            print(line, file=sys.stderr, flush=True)

    say = (lambda *a, **k: None) if quiet else print
    started = time.perf_counter()
    for name in names:
        say(f"minikto experiment {name}: running ({'quick' if args.quick else 'full size'})",
              flush=True)
        result = run_experiment(
            name,
            out / name,
            seeds=args.seeds,
            quick=args.quick,
            overwrite=args.overwrite,
            overwrite_docs=True,  # checked (or asked) above, before anything ran
            docs_dir=docs,
            progress=progress,
        )
        say(result.table_md)
        say(f"\n{result.verdict}\n")
        say(
            f"wrote {out / name}/: runs.csv, table.md, results_{name}.png, section.md, "
            f"summary.json ({result.seeds} seeds, {result.seconds:.1f} s)"
        )
        if docs is not None:
            say(f"updated {docs / 'RESULTS.md'} and {docs / 'figures'}/results_{name}.png")
    if len(names) > 1:
        say(f"\n{len(names)} experiments in {time.perf_counter() - started:.1f} s")
    return 0


def _confirm(paths: list[Path]) -> bool:
    """Ask on a terminal whether to replace ``paths``; never when input is not a terminal."""
    if not sys.stdin.isatty():
        return False
    shown = ", ".join(map(str, paths))
    try:
        answer = input(f"minikto experiment: replace {shown}? [y/N] ")
    except EOFError:
        return False
    return answer.strip().lower() in ("y", "yes")


#: KTOConfig fields that ``minikto train`` takes as flags (all of them).
_CONFIG_FLAGS = field_names()


def _cmd_check(args: argparse.Namespace) -> int:
    from .check_command import run

    return run(args)


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    """minikto's own warnings as one line, ``minikto: warning: ...``; others as Python shows
    them (with their source line)."""
    if category.__module__.split(".")[0] == "minikto":
        print(f"minikto: warning: {message}", file=sys.stderr if file is None else file)
    else:
        _PYTHON_SHOWWARNING(message, category, filename, lineno, file, line)


_PYTHON_SHOWWARNING = warnings.showwarning


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``minikto`` command (see :mod:`minikto.tools.flags`)."""
    return flags.build_parser(
        {
            "gradcheck": _cmd_gradcheck,
            "demo": _cmd_demo,
            "train": _cmd_train,
            "data": _cmd_data,
            "vectors": _cmd_vectors,
            "experiment": _cmd_experiment,
            "check": _cmd_check,
        }
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``minikto`` command with ``argv`` (default: ``sys.argv[1:]``)."""
    args = build_parser().parse_args(argv)
    args.command_line = ["minikto", *(sys.argv[1:] if argv is None else argv)]
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            return int(args.func(args))
    except KeyboardInterrupt:
        print(f"minikto {args.command}: interrupted. {_after_interrupt(args)}", file=sys.stderr)
        return 130
    except (ValueError, TypeError, OSError) as err:
        message = str(err)
        if isinstance(err, OSError) and err.errno == errno.ENOSPC:
            message += f". {_after_full_disk(args)}"
        print(f"minikto {args.command}: error: {message}", file=sys.stderr)
        return 2



def _after_full_disk(args: argparse.Namespace) -> str:
    """What a full disk did not destroy (every file minikto replaces is written aside first)."""
    kept = ("Nothing was lost: minikto writes each file beside the old one and renames it into "
            "place only once complete, so every file keeps its previous version")
    if args.command == "train" and not getattr(args, "overwrite", False):
        return kept + (f"; the run in {args.out} keeps its last checkpoint. Free some space and "
                       "run the command again (with --resume once a checkpoint exists)")
    if args.command in ("train", "demo", "experiment") and getattr(args, "overwrite", False):
        return kept + f"; the old run in {args.out} is whole. Free some space and run it again"
    return kept + ". Free some space and run the command again"


def _after_interrupt(args: argparse.Namespace) -> str:
    """What an interrupted command kept, and how to go on."""
    out = Path(args.out) if getattr(args, "out", None) else None
    if args.command == "train" and not (out / ".minikto-run").is_file():
        return (f"Nothing was written to {args.out}: the run had not started there; run the "
                "same command again.")
    if args.command == "train" and getattr(args, "overwrite", False):
        return (f"The run that was in {args.out} is kept as it was (a replacement is swapped in "
                "only once complete); run the same command again to replace it.")
    if args.command == "train" and not (out / "checkpoint.npz").is_file():
        return (f"The run in {args.out} had saved no checkpoint yet; run the same command "
                "again to start it over.")
    if args.command == "train":
        again = [a for a in args.command_line[1:] if a != "--resume"]
        return (
            f"The run folder {args.out} keeps its last checkpoint (if one was saved); continue "
            f"it with: minikto {shlex.join(again)} --resume"
        )
    if args.command == "demo":
        return "Nothing was replaced; run the demo again (with --overwrite for the same --out)."
    if args.command == "experiment":
        return ("The experiment's folder and docs were left as they were; run it again (with "
                "--overwrite if its folder was already complete).")
    return "Nothing was written."


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
