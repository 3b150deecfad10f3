"""Where the time of one minikto KTO step goes, phase by phase (NumPy, float32).

The step of ``bench_step.py`` cut into the calls it makes, each timed on its own (median of
a few runs, taken in turns): checking and flattening a batch, a forward pass without and
with the cache, the batch estimate and the loss, the backward pass from the cache; and, for
the dense sizes, the bare matrix products of one forward (``h @ W``) and of the weight
gradient (``h.T @ G``) for comparison.

A step is: one cached forward + two plain forwards + estimate and loss + one backward.

Usage::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/phases.py --sizes medium,large
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_step import BETA, SIZES, make_problem  # noqa: E402
from harness import fmt_time, time_round_robin  # noqa: E402

from minikto.kto import kl_estimate, kto_loss  # noqa: E402


def phases(name: str, repeats: int) -> dict[str, float]:
    size = SIZES[name]
    p = make_problem(size, "numpy")
    pol = p.policy
    logps, cache = pol.sequence_logps(p.prompts, p.responses, return_cache=True)
    out = kto_loss(logps, p.reference_logps, p.desirable, 0.0, beta=BETA)
    fns = {
        "check + flatten": lambda: pol.token_batch(p.prompts, p.responses),
        "forward": lambda: pol.sequence_logps(p.prompts, p.responses),
        "forward + cache": lambda: pol.sequence_logps(p.prompts, p.responses, return_cache=True),
        "estimate + loss": lambda: kto_loss(
            logps,
            p.reference_logps,
            p.desirable,
            kl_estimate(logps, p.reference_logps).z0,
            beta=BETA,
        ),
        "backward (cache)": lambda: pol.sequence_logps_backward(
            p.prompts, p.responses, out.grad_policy_logps, cache=cache
        ),
    }
    if size.features != "onehot":
        rng = np.random.default_rng(0)
        h = rng.standard_normal((size.tokens, int(size.features)), dtype=np.float32)
        g = rng.standard_normal((size.tokens, size.vocab), dtype=np.float32)
        w = pol.params["weight"]
        fns["matmul h @ W"] = lambda: h @ w
        fns["matmul h.T @ G"] = lambda: h.T @ g
    times = time_round_robin(fns, repeats, warmup=1, sync=lambda: None)
    return {k: statistics.median(v) for k, v in times.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="tiny,small,medium,large")
    ap.add_argument("--repeats", type=int, default=None)
    args = ap.parse_args(argv)
    for name in args.sizes.split(","):
        repeats = args.repeats or {"tiny": 200, "small": 200, "medium": 20}.get(name, 5)
        result = phases(name, repeats)
        step = (
            result["forward + cache"]
            + 2 * result["forward"]
            + result["estimate + loss"]
            + result["backward (cache)"]
        )
        print(f"{name}: sum of the phases of one step {fmt_time(step)}")
        for k, v in result.items():
            print(f"  {k:<18} {fmt_time(v):>10}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
