"""How the cost of one KTO step grows with V, d and the number of tokens (a log-log figure).

Starting from the ``medium`` row of ``bench_step.py`` (B=256, T=16, V=1024, d=128), one
quantity varies at a time; each point is the best of a few steps of minikto's step (the
one ``train`` runs) and, when torch is installed, of the torch autograd step, taken in
turns (the best, not the median: a shape is easier to read through a shared machine's
load spikes). The figure has one panel per quantity with a dashed line of slope 1 for reference:
every part of the step is linear in each of V, d and the tokens once the matrix products
dominate.

Usage::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/sweep_scaling.py \
        --out docs/figures/perf_scaling.png --json perf_scaling.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import replace

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_step import (  # noqa: E402  (the benchmark is a script folder, not a package)
    Size,
    TorchStep,
    make_problem,
    train_step,
)
from harness import synchronizer, time_round_robin  # noqa: E402
from report import torch_status  # noqa: E402

BASE = Size("medium", 256, 16, 1024, 128, 64)
SWEEPS = {
    "V": [256, 512, 1024, 2048, 4096, 8192],
    "d": [32, 64, 128, 256, 512],
    "tokens": [1024, 2048, 4096, 8192, 16384],
}


def point(size: Size, backend: str, repeats: int, with_torch: bool) -> dict[str, float]:
    p = make_problem(size, backend)
    ways = {"minikto": lambda: train_step(p)}
    if with_torch:
        ways["torch"] = TorchStep(p, "cuda" if backend == "cupy" else "cpu")
    times = time_round_robin(ways, repeats, warmup=1, sync=synchronizer(backend))
    return {name: min(t) for name, t in times.items()}


def sized(quantity: str, value: int) -> Size:
    if quantity == "V":
        return replace(BASE, vocab=value)
    if quantity == "d":
        return replace(BASE, features=value)
    return replace(BASE, length=value // BASE.batch)


def plot(results: dict, out: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = {"V": "vocabulary V", "d": "embedding width d", "tokens": "tokens per step B*T"}
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.8), sharey=True)
    for ax, (quantity, rows) in zip(axes, results.items(), strict=True):
        xs = [r["x"] for r in rows]
        for way, style in (("minikto", "o-"), ("torch", "s--")):
            if way in rows[0]:
                ax.loglog(xs, [r[way] * 1e3 for r in rows], style, label=f"{way} (best of n)")
        # slope-1 guide through the first minikto point
        first = rows[0]["minikto"] * 1e3
        ax.loglog(xs, [first * x / xs[0] for x in xs], ":", color="gray", label="slope 1")
        ax.set_xticks(xs, [str(x) for x in xs])
        ax.xaxis.set_minor_formatter(plt.NullFormatter())
        ax.set_xlabel(labels[quantity])
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("one step (ms)")
    axes[0].legend()
    fig.suptitle(
        "KTO step cost around B=256, T=16, V=1024, d=128 (float32; others fixed)", fontsize=10
    )
    fig.tight_layout()
    fig.savefig(out, dpi=120)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backend", choices=("numpy", "cupy"), default="numpy")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default="docs/figures/perf_scaling.png")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    why_not = torch_status("cuda" if args.backend == "cupy" else "cpu")
    if why_not:
        print(f"note: {why_not}")
    results: dict[str, list[dict]] = {}
    for quantity, values in SWEEPS.items():
        results[quantity] = []
        for value in values:
            times = point(sized(quantity, value), args.backend, args.repeats, why_not is None)
            results[quantity].append({"x": value, **times})
            shown = "  ".join(f"{k} {v * 1e3:8.1f} ms" for k, v in times.items())
            print(f"{quantity:>6} = {value:>6}: {shown}", flush=True)
    plot(results, args.out)
    print(f"wrote {args.out}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"base": BASE.__dict__, "backend": args.backend, "results": results}, f)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
