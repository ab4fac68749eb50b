"""Speed of the evaluation that runs after every epoch and at the end of the workflow.

    python benchmarks_scripts/bench_metrics.py [--samples 16000] [--repeats 5]

Prints seconds per call of ``best_threshold`` (exact, bucketed) against a full sort of every
score, on a test split of the demo's size (16,000 samples x 256 bits; training calls it twice an
epoch, for validation and test), and of ``significance_table`` on 4 apps x 3 archs x 5 models
with 1,000 bootstrap draws, as the demo's ``table_significance`` job.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from packd.metrics import best_threshold, best_threshold_by_sort
from packd.tables import significance_table


def _best_of(fn, arguments: tuple, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        fn(*arguments)
        best = min(best, time.perf_counter() - started)
    return best


def full_sort_best_threshold(labels: np.ndarray, scores: np.ndarray) -> tuple[float, float]:
    """The search before buckets: sort every score."""
    return best_threshold_by_sort(labels.ravel(), scores.ravel(), int(labels.sum()))


def main(argv: list[str] | None = None) -> int:
    """Print the timings."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--samples", type=int, default=16_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    print(f"best_threshold, {args.samples} samples x 256 bits (seconds, best of {args.repeats})")
    for density in (0.06, 0.38):  # label bits set: about bc/sssp and cc/pr
        labels = rng.random((args.samples, 256)) < density
        noise = rng.normal(0.3, 0.2, labels.shape)
        scores = np.clip(0.3 * labels + noise, 0, 1).astype(np.float32)
        assert best_threshold(labels, scores) == full_sort_best_threshold(labels, scores)
        bucketed = _best_of(best_threshold, (labels, scores), args.repeats)
        full = _best_of(full_sort_best_threshold, (labels, scores), args.repeats)
        print(f"  {density:.0%} bits set: bucketed {bucketed:.3f}  full sort {full:.3f}")

    counts = {
        (app, arch, model): rng.integers(0, 40, size=(args.samples, 3)).astype(np.int32)
        for app in ("bc", "cc", "pr", "sssp")
        for arch in ("lstm", "mixer", "resnet")
        for model in ("teacher", "packd_teachers", "packd", "standard_kd", "no_kd")
    }
    seconds = _best_of(significance_table, (counts, 1000), 1)
    print(f"significance_table, 60 models x {args.samples} samples, 1000 draws: {seconds:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
