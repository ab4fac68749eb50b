"""Micro-F1 over all samples x delta bits, the best threshold, and inference latency."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
from torch import nn


def _counts(labels: np.ndarray, scores: np.ndarray, threshold: float) -> tuple[int, int, int]:
    """True positives, predicted positives and actual positives at a threshold."""
    labels = np.asarray(labels, dtype=bool)
    predicted = np.asarray(scores) >= threshold
    if labels.shape != predicted.shape:
        raise ValueError(f"labels shape {labels.shape} != scores shape {predicted.shape}")
    true_positives = int(np.count_nonzero(labels & predicted))
    return true_positives, int(np.count_nonzero(predicted)), int(np.count_nonzero(labels))


def micro_precision(labels: np.ndarray, scores: np.ndarray, threshold: float) -> float:
    """Micro precision of `scores >= threshold` (0 when nothing is predicted)."""
    true_positives, predicted, _ = _counts(labels, scores, threshold)
    return true_positives / predicted if predicted else 0.0


def micro_recall(labels: np.ndarray, scores: np.ndarray, threshold: float) -> float:
    """Micro recall of `scores >= threshold` (0 when there are no positives)."""
    true_positives, _, actual = _counts(labels, scores, threshold)
    return true_positives / actual if actual else 0.0


def micro_f1(labels: np.ndarray, scores: np.ndarray, threshold: float) -> float:
    """Micro-F1 of `scores >= threshold` over every element, as sklearn's average="micro"."""
    true_positives, predicted, actual = _counts(labels, scores, threshold)
    denominator = predicted + actual
    return 2.0 * true_positives / denominator if denominator else 0.0


def evaluate_scores(labels: np.ndarray, probs: np.ndarray, threshold: float) -> dict[str, float]:
    """Micro F1, precision and recall of `probs >= threshold`."""
    true_positives, predicted, actual = _counts(labels, probs, threshold)
    return {
        "f1": 2.0 * true_positives / (predicted + actual) if predicted + actual else 0.0,
        "precision": true_positives / predicted if predicted else 0.0,
        "recall": true_positives / actual if actual else 0.0,
    }


def best_threshold(
    labels: np.ndarray, scores: np.ndarray, grid: np.ndarray | None = None
) -> tuple[float, float]:
    """(threshold, micro-F1) maximising micro-F1 for `scores >= threshold`; exact when grid is None.

    The exact search uses that the optimum sits at some positive element's score: raising the
    threshold to the next positive's score keeps every true positive and drops false positives.
    """
    labels = np.asarray(labels, dtype=bool).ravel()
    scores = np.asarray(scores).ravel()
    if labels.shape != scores.shape:
        raise ValueError(f"labels size {labels.size} != scores size {scores.size}")
    actual = int(np.count_nonzero(labels))
    if actual == 0:
        return 0.5, 0.0
    if grid is not None:
        f1_per_threshold = [micro_f1(labels, scores, float(t)) for t in grid]
        best = int(np.argmax(f1_per_threshold))
        return float(grid[best]), float(f1_per_threshold[best])
    return _exact_best_threshold(labels, scores, actual)


def best_threshold_by_sort(
    labels: np.ndarray,
    scores: np.ndarray,
    actual: int,
    positives_above: int = 0,
    predicted_above: int = 0,
) -> tuple[float, float]:
    """Exact best (threshold, micro-F1) over the distinct positive scores, by sorting every score.

    Flat labels (with at least one positive) and scores; actual counts every positive. The
    `_above` counts add elements scoring above all of these (the bucketed search passes them);
    with them 0 this is the whole search, the reference the bucketed one is checked against.
    """
    positive_scores = np.sort(scores[labels])
    all_scores = np.sort(scores)
    candidates = np.unique(positive_scores)  # ascending, distinct
    true_positives = (
        positives_above
        + positive_scores.size
        - np.searchsorted(positive_scores, candidates, side="left")
    )
    predicted = (
        predicted_above + all_scores.size - np.searchsorted(all_scores, candidates, side="left")
    )
    f1_per_candidate = 2.0 * true_positives / (predicted + actual)
    best = int(np.argmax(f1_per_candidate))  # the first, i.e. lowest, of tied thresholds
    return float(candidates[best]), float(f1_per_candidate[best])


def _exact_best_threshold(
    labels: np.ndarray, scores: np.ndarray, actual: int, buckets: int = 4096
) -> tuple[float, float]:
    """The exact optimum without sorting every score (that took 0.5 s per epoch on 4 M scores).

    Scores go into equal-width buckets; every score in a higher bucket is strictly larger, so
    suffix sums give exact counts above each bucket. The F1 with only the buckets above b
    predicted is reached by some threshold, so the best of those is a lower bound on the optimum;
    a bucket's candidates score at most 2 TP(all of it and above) / (predicted above + 1 +
    actual). Only buckets whose bound reaches the lower bound are searched exactly. Ties go to
    the lowest threshold, as a full sort would give.
    """
    low, high = float(scores.min()), float(scores.max())
    scale = buckets / (high - low) if high > low else 0.0
    # Monotone in the score (IEEE rounding is), hence the strict order across buckets.
    index = ((scores.astype(np.float64) - low) * scale).astype(np.int32)
    np.minimum(index, buckets - 1, out=index)
    per_bucket = np.bincount(index, minlength=buckets)
    positives_per_bucket = np.bincount(index[labels], minlength=buckets)
    # counts in the buckets strictly above each one: suffix sums shifted by one
    predicted_above = np.append(np.cumsum(per_bucket[::-1])[::-1][1:], 0)
    positives_above = np.append(np.cumsum(positives_per_bucket[::-1])[::-1][1:], 0)
    lower = 2.0 * positives_above / (predicted_above + actual)
    bound = 2.0 * (positives_above + positives_per_bucket) / (predicted_above + 1 + actual)
    searched = (bound >= lower.max()) & (positives_per_bucket > 0)
    members = searched[index]  # one pass over the scores, then work on the few members
    member_index, member_scores = index[members], scores[members]
    member_labels = labels[members]
    best_f1, best_threshold_value = -1.0, 0.5
    for bucket in np.flatnonzero(searched):
        in_bucket = member_index == bucket
        threshold, f1 = best_threshold_by_sort(
            member_labels[in_bucket],
            member_scores[in_bucket],
            actual,
            positives_above=positives_above[bucket],
            predicted_above=predicted_above[bucket],
        )
        # Buckets ascend, so a later bucket must beat the best strictly to replace it.
        if f1 > best_f1:
            best_f1, best_threshold_value = f1, threshold
    return best_threshold_value, best_f1


def latency_per_sample(
    model: nn.Module,
    batch_size: int,
    repeats: int = 20,
    device: torch.device | str = "cpu",
    warmup: int = 3,
    input_shape: tuple[int, int] = (10, 10),
) -> float:
    """Median seconds per sample of a forward pass at batch_size (inference mode, after warm-up)."""
    device = torch.device(device)
    model = model.to(device).eval()
    inputs = torch.rand((batch_size, *input_shape), generator=torch.Generator().manual_seed(0))
    inputs = inputs.to(device)
    seconds_per_batch = []
    with torch.inference_mode():
        for step in range(warmup + repeats):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            model(inputs)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if step >= warmup:
                seconds_per_batch.append(time.perf_counter() - start)
    return float(np.median(seconds_per_batch)) / batch_size


def micro_average_precision(labels: np.ndarray, scores: np.ndarray) -> float:
    """Threshold-free micro average precision over every (sample, bit) pair.

    scikit-learn's definition (a step sum of precision over the recall gained at each distinct
    score, ties as one step) with one unstable sort and without its input checks: half the time
    of sklearn.metrics.average_precision_score on a test split (1.5 M pairs); a test checks both
    agree.
    """
    labels = np.asarray(labels, dtype=bool).ravel()
    scores = np.asarray(scores).ravel()
    if labels.size != scores.size:
        raise ValueError(f"{labels.size} labels but {scores.size} scores")
    if not labels.any():
        return 0.0
    order = np.argsort(scores)[::-1]
    sorted_scores = scores[order]
    # The last pair of every run of equal scores: one threshold each
    step_ends = np.r_[np.flatnonzero(sorted_scores[1:] != sorted_scores[:-1]), labels.size - 1]
    true_positives = np.cumsum(labels[order], dtype=np.float64)[step_ends]
    precision = true_positives / (step_ends + 1)
    recall_gain = np.diff(true_positives, prepend=0.0) / true_positives[-1]
    return float(np.sum(recall_gain * precision))


def top_k_precision_recall(labels: np.ndarray, scores: np.ndarray, k: int) -> dict[str, float]:
    """Precision and recall of the k highest-scoring bits of every sample, whatever their score:
    what a prefetcher of degree k would issue."""
    labels = np.asarray(labels, dtype=bool)
    top = np.argpartition(-np.asarray(scores), k - 1, axis=1)[:, :k]
    hits = int(np.take_along_axis(labels, top, axis=1).sum())
    actual = int(labels.sum())
    return {
        "precision_at_degree": hits / top.size if top.size else 0.0,
        "recall_at_degree": hits / actual if actual else 0.0,
    }


def frequency_top_k(train_labels: np.ndarray, k: int) -> np.ndarray:
    """The bit-frequency baseline's top-k, the same for every sample: the k bits set most often
    in the training labels, ties to the lower bit index; ascending bit indices."""
    counts = np.asarray(train_labels, dtype=bool).sum(axis=0)
    return np.sort(np.argsort(-counts, kind="stable")[:k])


def top_k_differs(scores: np.ndarray, bits: np.ndarray) -> np.ndarray:
    """Per sample, whether its k highest-scoring bits (ties to the lower bit index) are other
    than `bits` (k distinct bit indices, e.g. frequency_top_k).

    Without sorting every row: the row's top k is `bits` exactly when its weakest member of
    `bits` (lowest score, then highest index) ranks before its strongest other bit (highest
    score, then lowest index). NaN scores compare false, so such a row counts as differing.
    """
    scores = np.asarray(scores)
    inside = np.zeros(scores.shape[1], dtype=bool)
    inside[np.asarray(bits)] = True
    if inside.sum() != len(bits):
        raise ValueError(f"top-k bits must be distinct, got {list(bits)}")
    if inside.all():
        return np.zeros(len(scores), dtype=bool)  # k = every bit: nothing else to issue
    in_index, out_index = np.flatnonzero(inside), np.flatnonzero(~inside)
    in_scores, out_scores = scores[:, inside], scores[:, ~inside]
    weakest = in_scores.min(axis=1)
    strongest = out_scores.max(axis=1)
    # Tied at the boundary: equal scores rank by bit index
    last_in = np.where(in_scores == weakest[:, None], in_index, -1).max(axis=1)
    first_out = np.where(out_scores == strongest[:, None], out_index, inside.size).min(axis=1)
    same = (weakest > strongest) | ((weakest == strongest) & (last_in < first_out))
    return ~same


def differs_from_frequency(scores: np.ndarray, frequency_bits: np.ndarray) -> dict[str, Any]:
    """How many samples' top-k bits (k = len(frequency_bits), the prefetch degree) are not the
    bit-frequency baseline's: `top_k_differs_from_frequency` (fraction of samples, 0 when there
    are none), `top_k_differs_from_frequency_count`, and the baseline's bits
    (`frequency_top_k`). A model collapsed to the label prior issues the baseline's bits for
    (nearly) every sample: fraction near 0."""
    differs = top_k_differs(scores, frequency_bits)
    count = int(np.count_nonzero(differs))
    return {
        "top_k_differs_from_frequency": count / differs.size if differs.size else 0.0,
        "top_k_differs_from_frequency_count": count,
        "frequency_top_k": [int(bit) for bit in frequency_bits],
    }


def authors_protocol(history: list[dict], final: dict[str, float]) -> dict[str, float | None]:
    """The authors' protocol whole: the epoch AND threshold with the best test F1, with F1,
    precision, recall and threshold all from that epoch (the training history records them for
    every epoch, the saved one included). `final` holds the same four for the saved epoch, used
    when the history recorded no test metrics (several routed models: only the threshold is
    chosen on test)."""
    records = [record for record in history if "test_f1_best_threshold" in record]
    if not records:
        return dict(final, test_selected_epoch=None)
    best = max(records, key=lambda record: record["test_f1_best_threshold"])
    return {
        "test_selected_f1": best["test_f1_best_threshold"],
        "test_selected_threshold": best["test_best_threshold"],
        "test_selected_precision": best["test_precision_best_threshold"],
        "test_selected_recall": best["test_recall_best_threshold"],
        "test_selected_epoch": best["epoch"],
    }


def protocol_metrics(
    val_labels: np.ndarray,
    val_probs: np.ndarray,
    test_labels: np.ndarray,
    test_probs: np.ndarray,
    degree: int = 2,
    frequency_bits: np.ndarray | None = None,
) -> dict[str, Any]:
    """Test metrics under our protocol (threshold chosen on validation: `f1`, `precision`,
    `recall`, `threshold`, `val_f1`), at 0.5 (`f1_at_0.5`), threshold-free (`average_precision`,
    top-`degree` `precision_at_degree` and `recall_at_degree`), and with the threshold chosen on
    test for the saved epoch (`test_selected_*`; see authors_protocol for the epoch). With
    frequency_bits (frequency_top_k of the training labels at `degree`), also how many test
    samples' top-`degree` bits differ from them (differs_from_frequency)."""
    threshold, val_f1 = best_threshold(val_labels, val_probs)
    at_threshold = evaluate_scores(test_labels, test_probs, threshold)
    test_threshold, test_f1 = best_threshold(test_labels, test_probs)
    at_test_threshold = evaluate_scores(test_labels, test_probs, test_threshold)
    prior = {}
    if frequency_bits is not None:
        if len(frequency_bits) != degree:
            raise ValueError(f"{len(frequency_bits)} frequency bits for degree {degree}")
        prior = differs_from_frequency(test_probs, frequency_bits)
    return {
        **at_threshold,
        "threshold": threshold,
        "val_f1": val_f1,
        "f1_at_0.5": evaluate_scores(test_labels, test_probs, 0.5)["f1"],
        "test_selected_f1": test_f1,
        "test_selected_threshold": test_threshold,
        "test_selected_precision": at_test_threshold["precision"],
        "test_selected_recall": at_test_threshold["recall"],
        "average_precision": micro_average_precision(test_labels, test_probs),
        **top_k_precision_recall(test_labels, test_probs, degree),
        **prior,
    }
