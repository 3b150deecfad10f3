"""The ``minikto`` command: ``demo``, ``train``, ``gradcheck``, ``data``, ``vectors``,
``experiment``.

Each subcommand is a small function taking the parsed arguments and returning an exit code.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path


def _cmd_gradcheck(args: argparse.Namespace) -> int:
    from ..gradcheck import format_table, run_selfcheck

    rows = run_selfcheck(args.backend, rtol=args.rtol)
    print(
        f"minikto gradcheck: full KTO objective against central finite differences "
        f"(float64, h = 1e-6, backend {args.backend}, pass: relative error <= {args.rtol:g})"
    )
    print(format_table(rows))
    failed = [r for r in rows if not r.report.passed]
    print(f"\n{len(rows) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


def _cmd_demo(args: argparse.Namespace) -> int:
    import matplotlib

    matplotlib.use("Agg")
    from .demo import run_demo

    out = args.out or time.strftime("runs/demo-%Y%m%d-%H%M%S")
    run_demo(out, seed=args.seed, overwrite=args.overwrite, max_steps=args.max_steps)
    return 0


def _cmd_data(args: argparse.Namespace) -> int:
    from ..data.feedback import sample_paired, sample_unpaired
    from ..data.jsonl import write_paired, write_unpaired
    from ..data.toy import bandit_task, default_task

    task = bandit_task() if args.task == "bandit" else default_task()
    out = Path(args.out)
    if out.exists() and not args.overwrite:
        print(f"minikto data: {out} exists; pass --overwrite to replace it", file=sys.stderr)
        return 2
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
    from ..data.jsonl import read_paired, read_unpaired
    from ..data.toy import bandit_task, default_task
    from ..exact import ExactEvaluator
    from ..training.config import KTOConfig
    from ..training.train import train
    from .plots import plot_policy_before_after, plot_training_curves, save_figure

    fields = KTOConfig.from_json(args.config).to_dict() if args.config else {}
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
                f"got {fields['features']!r}"
            ) from None
    config = KTOConfig.from_dict(fields)
    task = bandit_task() if args.task == "bandit" else default_task()
    paired = config.loss == "dpo"
    if args.data:
        data = read_paired(args.data, task) if paired else read_unpaired(args.data, task)
    elif paired:
        data = sample_paired(task, args.n, seed=config.seed)
    else:
        data = sample_unpaired(task, args.n, seed=config.seed)
    result = train(
        task, data, config, out_dir=args.out, overwrite=args.overwrite, resume=args.resume
    )
    evaluator = ExactEvaluator(task, result.reference)
    figures = Path(args.out) / "figures"
    figures.mkdir(exist_ok=True)
    save_figure(plot_training_curves(result.history, result.evals), figures / "training_curves.png")
    save_figure(
        plot_policy_before_after(task, evaluator, result.reference, result.policy),
        figures / "policy_before_after.png",
    )
    print(json.dumps(result.summary, indent=2))
    return 0


def _cmd_vectors(args: argparse.Namespace) -> int:
    from .vectors import check_vectors, write_vectors

    if args.check:
        failures = check_vectors(args.check)
        for line in failures:
            print(line)
        print(f"{args.check}: {'FAILED' if failures else 'all cases agree with minikto'}")
        return 1 if failures else 0
    if not args.out:
        raise ValueError("--out: expected the JSON file to write (or --check FILE)")
    print(f"wrote {write_vectors(args.out)}")
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
    for name in names:  # refuse before anything runs, so `all` never stops half-way
        target = out / name
        if target.exists() and (not target.is_dir() or any(target.iterdir())):
            if not args.overwrite:
                raise FileExistsError(
                    f"--out: {target} already holds results; pass --overwrite to replace "
                    "them or choose another --out"
                )
    started = time.perf_counter()
    for name in names:
        print(f"minikto experiment {name}: running ({'quick' if args.quick else 'full size'})",
              flush=True)
        result = run_experiment(
            name,
            out / name,
            seeds=args.seeds,
            quick=args.quick,
            overwrite=args.overwrite,
            docs_dir=docs,
        )
        print(result.table_md)
        print(f"\n{result.verdict}\n")
        print(
            f"wrote {out / name}/: runs.csv, table.md, results_{name}.png, section.md, "
            f"summary.json ({result.seeds} seeds, {result.seconds:.1f} s)"
        )
        if docs is not None:
            print(f"updated {docs / 'RESULTS.md'} and {docs / 'figures'}/results_{name}.png")
    if len(names) > 1:
        print(f"\n{len(names)} experiments in {time.perf_counter() - started:.1f} s")
    return 0


def _z0_value(text: str) -> str | float:
    try:
        return float(text)
    except ValueError:
        return text


#: KTOConfig fields that ``minikto train`` takes as flags.
_CONFIG_FLAGS = {
    "beta": float,
    "desirable_weight": float,
    "undesirable_weight": float,
    "z0": str,
    "loss": str,
    "learning_rate": float,
    "optimizer": str,
    "batch_size": int,
    "max_steps": int,
    "seed": int,
    "features": str,
    "backend": str,
    "dtype": str,
    "sft_steps": int,
    "eval_every": int,
    "checkpoint_every": int,
}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``minikto`` command."""
    parser = argparse.ArgumentParser(
        prog="minikto",
        description="KTO from scratch: a toy policy, the KTO loss, gradients by hand.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("gradcheck", help="check every gradient against finite differences")
    p.add_argument("--backend", default="numpy", help="numpy (default), array_api_strict, cupy")
    p.add_argument("--rtol", type=float, default=1e-6, help="relative error allowed")
    p.set_defaults(func=_cmd_gradcheck)

    p = sub.add_parser("demo", help="the main job: KTO on the default toy, before/after, figures")
    p.add_argument("--out", help="run directory (default: runs/demo-<date>-<time>)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-steps", type=int, default=None, help="override the demo's steps")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("train", help="train on a toy dataset (flags or a config file)")
    p.add_argument("--out", required=True, help="run directory")
    p.add_argument("--config", help="a JSON file of KTOConfig fields (flags override it)")
    p.add_argument("--data", help="a JSON Lines dataset (TRL's unpaired or paired format)")
    p.add_argument("--task", choices=("default", "bandit"), default="default")
    p.add_argument("--n", type=int, default=2000, help="examples to sample when no --data")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run directory")
    p.add_argument("--resume", action="store_true", help="continue from the run's checkpoint")
    for name, kind in _CONFIG_FLAGS.items():
        p.add_argument(
            "--" + name.replace("_", "-"),
            dest=name,
            type=kind,
            default=None,
            help=f"KTOConfig.{name}",
        )
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("data", help="write a toy dataset as JSON Lines (TRL's formats)")
    p.add_argument("--out", required=True, help="the .jsonl file")
    p.add_argument("--task", choices=("default", "bandit"), default="default")
    p.add_argument("--n", type=int, default=1000, help="examples (or pairs)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--paired", action="store_true", help="prompt/chosen/rejected pairs")
    p.add_argument("--label-noise", type=float, default=0.0, help="fraction of labels flipped")
    p.add_argument(
        "--desirable-fraction",
        type=float,
        default=1.0,
        help="fraction of desirable examples kept (imbalance)",
    )
    p.add_argument("--one-per-prompt", action="store_true", help="one response per prompt")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=_cmd_data)

    p = sub.add_parser("vectors", help="reference vectors for testing other KTO implementations")
    p.add_argument("--out", help="the JSON file to write")
    p.add_argument("--check", help="recompute a vectors file with minikto and compare")
    p.set_defaults(func=_cmd_vectors)

    p = sub.add_parser("experiment", help="reproduce a claim of the paper on the toy")
    p.add_argument(
        "name",
        choices=(
            "all", "imbalance", "noise", "contradiction", "minority", "one-y-per-x",
            "reference-point", "frontier",
        ),
        help="the experiment, or all of them",
    )
    p.add_argument(
        "--out", default="results", help="parent directory: writes OUT/NAME/ (default results)"
    )
    p.add_argument("--seeds", type=int, default=None, help="seeds 0..N-1 (default 5; quick 2)")
    p.add_argument("--quick", action="store_true", help="reduced size (fewer steps and runs)")
    p.add_argument("--overwrite", action="store_true", help="replace existing OUT/NAME/")
    p.add_argument(
        "--write-docs",
        action="store_true",
        help="also rewrite this experiment's section of DOCS/RESULTS.md and its figure",
    )
    p.add_argument("--docs", default="docs", help="the docs directory (default docs)")
    p.set_defaults(func=_cmd_experiment)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``minikto`` command with ``argv`` (default: ``sys.argv[1:]``)."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (ValueError, TypeError, OSError) as err:
        print(f"minikto {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
