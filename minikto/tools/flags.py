"""The flags of the ``minikto`` command, with their meaning, default and choices.

The train flags are generated from :class:`~minikto.training.config.KTOConfig`'s fields (their
defaults and help live there, once). Every multi-word flag is accepted with dashes or, as
Hugging Face scripts write it, with underscores (``--max-steps``, ``--max_steps``); TRL's names
for the same knob are aliases (``--per_device_train_batch_size`` for ``--batch-size``,
``--output_dir`` for ``--out``).
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable, Iterator

from .._brief import brief
from ..training.config import BACKENDS, TRL_ALIASES, KTOConfig

__all__ = ["build_parser", "function_text", "path_text", "z0_value"]



def z0_value(text: str) -> str | float:
    """``--z0``: a number of nats, or the name of a mode (checked by KTOConfig)."""
    try:
        return float(text)
    except ValueError:
        return text


def path_text(text: str) -> str:
    """A path flag: any text but the empty string (which would silently mean "not given")."""
    if text == "":
        raise argparse.ArgumentTypeError("expected a path; got an empty string")
    return text


def function_text(text: str) -> str:
    """A ``MODULE:FUNCTION`` flag: not the empty string."""
    if text == "":
        raise argparse.ArgumentTypeError("expected MODULE:FUNCTION; got an empty string")
    return text


def _features_value(text: str) -> str | int:
    if text == "onehot":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"features: expected 'onehot' or a positive int width; got {brief(text)}"
        ) from None


def _backend_name(text: str) -> str:
    """A backend flag names one of the known array libraries; nothing else is imported."""
    if text not in BACKENDS:
        raise argparse.ArgumentTypeError(
            f"backend: expected 'numpy', 'array_api_strict' or 'cupy'; got {brief(text)}"
        )
    return text


#: How a flag's text becomes a field's value, by the field's annotation.
_FIELD_TYPES = {
    "float": float,
    "int": int,
    "str": str,
    "str | float": z0_value,
    "str | int": _features_value,
}


#: The value's name in --help for a field without choices.
_METAVARS = {"float": "X", "int": "N"}


def _spellings(name: str) -> list[str]:
    """``max_steps`` -> ``["--max-steps", "--max_steps"]``: the dashed and the HF spelling."""
    dashed = "--" + name.replace("_", "-")
    return [dashed, "--" + name] if "_" in name else [dashed]


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends ``(default: X)`` to a flag's help unless it has no default worth showing."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False or "default:" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)

    def _format_action_invocation(self, action: argparse.Action) -> str:
        """``--max-steps, --max_steps N`` rather than the value's name after each spelling."""
        if not action.option_strings or action.nargs == 0:
            return super()._format_action_invocation(action)
        metavar = self._get_default_metavar_for_optional(action)
        return ", ".join(action.option_strings) + " " + self._format_args(action, metavar)


class _ExperimentNames:
    """``all`` and the names of :data:`minikto.experiments.EXPERIMENTS`, looked up when first
    needed, so that the other commands do not pay for importing the experiments."""

    def _names(self) -> tuple[str, ...]:
        from ..experiments import EXPERIMENTS

        return ("all", *EXPERIMENTS)

    def __contains__(self, name: object) -> bool:
        return name in self._names()

    def __iter__(self) -> Iterator[str]:  # argparse lists the choices in --help and errors
        return iter(self._names())


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per KTOConfig field, with the field's help, default and choices."""
    group = parser.add_argument_group(
        "training configuration (KTOConfig's fields; a flag overrides --config)"
    )
    for field in dataclasses.fields(KTOConfig):
        names = _spellings(field.name)
        names += ["--" + alias for alias, name in TRL_ALIASES.items() if name == field.name]
        choices = field.metadata["choices"]
        text = field.metadata["help"]
        if field.default is not None:
            text += f" (default: {field.default})"
        if field.type == "bool | None":
            group.add_argument(*names, dest=field.name, default=None, help=text,
                               action=argparse.BooleanOptionalAction)
            continue
        kind = _backend_name if field.name == "backend" else _FIELD_TYPES[field.type]
        metavar = "{" + ",".join(map(str, choices)) + "}" if choices else _METAVARS[field.type]
        group.add_argument(*names, dest=field.name, type=kind, default=None, metavar=metavar,
                           help=text)


def _version() -> str:
    import platform

    import numpy

    from .._version import __version__

    return (f"minikto {__version__} (numpy {numpy.__version__}, "
            f"Python {platform.python_version()})")


#: ``minikto train --data``: what a dataset file may hold.
_DATA_HELP = (
    "a JSON Lines dataset in TRL's formats: unpaired {prompt, completion, label} or "
    "paired {prompt, chosen, rejected} (unpaired into 2N examples for an unpaired loss; "
    "dpo needs pairs), each also conversational with one user message as the prompt and "
    "one assistant message per completion; multi-turn conversations and the "
    "implicit-prompt format are refused"
)


def build_parser(commands: dict[str, Callable[[argparse.Namespace], int]]) -> (
    argparse.ArgumentParser
):
    """The argument parser of the ``minikto`` command.

    ``commands`` maps each subcommand to the function that runs it (``args.func``).
    """
    parser = argparse.ArgumentParser(
        prog="minikto",
        description="KTO from scratch: a toy policy, the KTO loss, gradients by hand.",
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help, description=help, formatter_class=_HelpFormatter)

    p = command("gradcheck", "check every gradient against central finite differences")
    p.add_argument("--backend", type=_backend_name, default="numpy",
                   metavar="{numpy,array_api_strict,cupy}", help="array library to check")
    p.add_argument("--rtol", type=float, default=0.0,
                   help="extra relative error allowed on top of the error bound (docs/CHECK.md); "
                        "0: the bound alone")
    p.set_defaults(func=commands["gradcheck"])

    p = command("demo", "the main job: KTO on the default toy, before/after table, figures")
    p.add_argument("--out", "--output_dir", dest="out", type=path_text,
                   help="run folder (default: runs/demo-<date>-<time>)")
    p.add_argument("--seed", type=int, default=0, help="seeds the data and the batch order")
    p.add_argument(*_spellings("max_steps"), dest="max_steps", type=int, default=None,
                   help="optimizer steps (default: the demo's 600)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run in --out")
    p.add_argument("--quiet", action="store_true", help="print only warnings and errors")
    p.set_defaults(func=commands["demo"])

    p = command("train", "train on a toy dataset (flags, a config file, or both)")
    p.add_argument("--out", "--output_dir", dest="out", required=True, type=path_text,
                   help="run folder")
    p.add_argument("--config", type=path_text,
                   help="a JSON or YAML (.yaml, .yml) file of KTOConfig fields; TRL's names for "
                        "them are accepted; at most 1 MiB")
    p.add_argument("--data", type=path_text, help=_DATA_HELP)
    p.add_argument("--task", choices=("default", "bandit"), default="default",
                   help="the toy task")
    p.add_argument("--n", type=int, default=2000, help="examples to sample when no --data")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing run in --out (not with --resume)")
    p.add_argument("--resume", action="store_true",
                   help="continue from the run's checkpoint (not with --overwrite)")
    p.add_argument("--quiet", action="store_true",
                   help="print only warnings and errors (no summary)")
    _add_config_flags(p)
    p.set_defaults(func=commands["train"])

    p = command("data", "write a toy dataset as JSON Lines (TRL's formats)")
    p.add_argument("--out", required=True, type=path_text, help="the .jsonl file")
    p.add_argument("--task", choices=("default", "bandit"), default="default",
                   help="the toy task")
    p.add_argument("--n", type=int, default=1000, help="examples (or pairs)")
    p.add_argument("--seed", type=int, default=0, help="seeds the sampling")
    p.add_argument("--paired", action="store_true", help="prompt/chosen/rejected pairs")
    p.add_argument(*_spellings("label_noise"), dest="label_noise", type=float, default=0.0,
                   help="fraction of labels flipped")
    p.add_argument(*_spellings("desirable_fraction"), dest="desirable_fraction", type=float,
                   default=1.0, help="fraction of desirable examples kept (imbalance)")
    p.add_argument(*_spellings("one_per_prompt"), dest="one_per_prompt", action="store_true",
                   help="one response per prompt")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    p.set_defaults(func=commands["data"])

    p = command("vectors", "reference vectors for testing other KTO implementations")
    p.add_argument("--out", type=path_text, help="the JSON file to write")
    p.add_argument("--check", type=path_text,
                   help="recompute a vectors file with minikto and compare")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    p.set_defaults(func=commands["vectors"])

    p = command("experiment", "reproduce a claim of the paper on the toy")
    p.add_argument("name", choices=_ExperimentNames(), help="the experiment, or all of them")
    p.add_argument("--out", "--output_dir", dest="out", default="results", type=path_text,
                   help="parent folder: writes OUT/NAME/")
    p.add_argument("--seeds", type=int, default=None,
                   help="seeds 0..N-1 (default: 5; with --quick 2)")
    p.add_argument("--quick", action="store_true", help="reduced size (fewer steps and runs)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace existing OUT/NAME/ (and, with --write-docs, the figure in "
                        "DOCS/figures/)")
    p.add_argument(*_spellings("write_docs"), dest="write_docs", action="store_true",
                   help="also rewrite this experiment's section of DOCS/RESULTS.md and its figure")
    p.add_argument("--docs", default="docs", type=path_text, help="the docs folder")
    p.add_argument("--quiet", action="store_true", help="print only warnings and errors")
    p.set_defaults(func=commands["experiment"])
    p = command("check", "check your own KTO loss and name its mistake")
    p.add_argument("function", type=function_text,
                   help="MODULE:FUNCTION or path/to/file.py:FUNCTION")
    p.add_argument("--z0", choices=("given", "estimated"), default="given",
                   help="the function takes z0 (given) or the mismatched pairs (estimated)")
    p.add_argument("--sequence", type=function_text,
                   help="MODULE:FUNCTION of token log-probs, mask -> sequence")
    p.add_argument("--seed", type=int, default=0, help="seed of the random cases")
    p.add_argument("--num-random", type=int, default=200, help="random batches")
    p.add_argument("--framework", choices=("numpy", "torch", "jax"), default=None,
                   help="default: detected from the function's module")
    p.set_defaults(func=commands["check"])
    return parser
