"""The ``minikto`` command: ``demo``, ``train``, ``gradcheck``, ``data``, ``vectors``,
``experiment``.

Each subcommand is a small function taking the parsed arguments and returning an exit code.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def _cmd_gradcheck(args: argparse.Namespace) -> int:
    from .selfcheck import format_table, run_selfcheck

    rows = run_selfcheck(args.backend, rtol=args.rtol)
    print(
        f"minikto gradcheck: full KTO objective against central finite differences "
        f"(float64, h = 1e-6, backend {args.backend}, pass: relative error <= {args.rtol:g})"
    )
    print(format_table(rows))
    failed = [r for r in rows if not r.report.passed]
    print(f"\n{len(rows) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``minikto`` command with ``argv`` (default: ``sys.argv[1:]``)."""
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
