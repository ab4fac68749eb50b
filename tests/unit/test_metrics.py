import numpy as np
import pytest
import torch
from sklearn.metrics import f1_score, precision_score, recall_score

from packd.metrics import (
    best_threshold,
    best_threshold_by_sort,
    evaluate_scores,
    latency_per_sample,
    micro_f1,
    micro_precision,
    micro_recall,
)


def _case(seed: int = 0, n: int = 200, bits: int = 32):
    rng = np.random.default_rng(seed)
    labels = rng.random((n, bits)) < 0.1
    scores = np.clip(labels * 0.3 + rng.random((n, bits)) * 0.7, 0, 1).astype(np.float32)
    return labels, scores


@pytest.mark.parametrize("threshold", [0.2, 0.5, 0.8])
def test_against_sklearn(threshold):
    labels, scores = _case()
    predicted = scores >= threshold
    assert micro_f1(labels, scores, threshold) == pytest.approx(
        f1_score(labels, predicted, average="micro")
    )
    assert micro_precision(labels, scores, threshold) == pytest.approx(
        precision_score(labels, predicted, average="micro")
    )
    assert micro_recall(labels, scores, threshold) == pytest.approx(
        recall_score(labels, predicted, average="micro")
    )
    assert evaluate_scores(labels, scores, threshold) == pytest.approx(
        {
            "f1": f1_score(labels, predicted, average="micro"),
            "precision": precision_score(labels, predicted, average="micro"),
            "recall": recall_score(labels, predicted, average="micro"),
        }
    )


def test_nothing_predicted_is_zero_not_nan():
    labels, scores = _case()
    assert micro_f1(labels, scores, 2.0) == 0.0
    assert micro_precision(labels, scores, 2.0) == 0.0


def test_best_threshold_beats_half_on_constructed_case():
    # positives score 0.3, negatives 0.1: at 0.5 nothing is predicted, at 0.3 everything is right
    labels = np.array([[1, 0, 0], [0, 1, 0]], dtype=bool)
    scores = np.where(labels, 0.3, 0.1)
    assert micro_f1(labels, scores, 0.5) == 0.0
    threshold, f1 = best_threshold(labels, scores)
    assert threshold == pytest.approx(0.3)
    assert f1 == pytest.approx(1.0)


def test_best_threshold_is_the_exhaustive_optimum():
    labels, scores = _case(seed=3, n=60, bits=8)
    threshold, f1 = best_threshold(labels, scores)
    exhaustive = max(micro_f1(labels, scores, t) for t in np.unique(scores))
    assert f1 == pytest.approx(exhaustive)
    assert micro_f1(labels, scores, threshold) == pytest.approx(f1)


def test_best_threshold_handles_ties_and_grid():
    labels = np.array([1, 0, 1, 0, 0], dtype=bool)
    scores = np.array([0.5, 0.5, 0.9, 0.9, 0.1])
    threshold, f1 = best_threshold(labels, scores)
    assert f1 == pytest.approx(micro_f1(labels, scores, threshold))
    assert f1 == pytest.approx(2 / 3)  # either tie level gives TP/pred = 1/2 or 2/4
    grid_threshold, grid_f1 = best_threshold(labels, scores, grid=np.array([0.95, 0.6]))
    assert grid_threshold == 0.6 and grid_f1 == pytest.approx(0.5)
    assert best_threshold(np.zeros(3, bool), np.ones(3)) == (0.5, 0.0)


def test_latency_per_sample_positive_and_small():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(100, 256))
    seconds = latency_per_sample(model, batch_size=8, repeats=3, device="cpu")
    assert 0 < seconds < 0.1


@pytest.mark.parametrize("seed", range(6))
def test_bucketed_best_threshold_equals_the_full_sort(seed):
    rng = np.random.default_rng(seed)
    n, bits = int(rng.integers(1, 400)), int(rng.integers(1, 64))
    labels = rng.random((n, bits)) < rng.uniform(0.01, 0.6)
    labels.flat[0] = True
    # informative float32 scores, rounded so that many tie, plus one far outlier
    scores = np.clip(0.3 * labels + rng.normal(0.35, 0.2, labels.shape), 0, 1)
    scores = (np.round(scores * rng.choice([50, 1000, 10**6])) / 1000).astype(np.float32)
    scores.flat[-1] = 7.0
    full_sort = best_threshold_by_sort(labels.ravel(), scores.ravel(), int(labels.sum()))
    assert best_threshold(labels, scores) == full_sort


def test_best_threshold_with_every_score_equal():
    labels = np.array([[1, 0], [0, 1], [0, 0]], dtype=bool)
    scores = np.full(labels.shape, 0.25, dtype=np.float32)
    assert best_threshold(labels, scores) == pytest.approx((0.25, 2 * 2 / (6 + 2)))


def test_authors_protocol_takes_every_figure_from_the_test_selected_epoch() -> None:
    from packd.metrics import authors_protocol

    def record(epoch: int, f1: float) -> dict:
        return {
            "epoch": epoch,
            "test_f1_best_threshold": f1,
            "test_best_threshold": 0.1 * epoch,
            "test_precision_best_threshold": 0.01 * epoch,
            "test_recall_best_threshold": 0.02 * epoch,
        }

    final = {
        "test_selected_f1": 0.55,
        "test_selected_threshold": 0.5,
        "test_selected_precision": 0.6,
        "test_selected_recall": 0.5,
    }
    chosen = authors_protocol([record(1, 0.5), record(2, 0.7), record(3, 0.6)], final)
    assert chosen == {
        "test_selected_f1": 0.7,
        "test_selected_threshold": 0.2,
        "test_selected_precision": 0.02,
        "test_selected_recall": 0.04,
        "test_selected_epoch": 2,
    }
    # No test records (several routed models): the threshold alone was chosen on test.
    assert authors_protocol([], final) == {**final, "test_selected_epoch": None}


def test_top_k_and_average_precision() -> None:
    from packd.metrics import micro_average_precision, top_k_precision_recall

    labels = np.array([[1, 0, 1, 0], [0, 1, 0, 0]], dtype=bool)
    scores = np.array([[0.9, 0.8, 0.1, 0.0], [0.2, 0.3, 0.1, 0.0]])
    # top 2: sample 0 -> bits 0, 1 (one hit), sample 1 -> bits 1, 0 (one hit)
    assert top_k_precision_recall(labels, scores, 2) == {
        "precision_at_degree": 0.5,
        "recall_at_degree": 2 / 3,
    }
    perfect = np.where(labels, 1.0, 0.0)
    assert micro_average_precision(labels, perfect) == pytest.approx(1.0)
    assert micro_average_precision(labels, scores) < 1.0


def test_micro_average_precision_equals_scikit_learn_with_ties() -> None:
    from sklearn.metrics import average_precision_score

    from packd.metrics import micro_average_precision

    generator = np.random.default_rng(3)
    labels = generator.random((300, 64)) < 0.1
    # Rounded scores: many ties, which count as one threshold step
    scores = np.round(np.clip(labels * 0.3 + generator.random(labels.shape) * 0.7, 0, 1), 2)
    expected = average_precision_score(labels.ravel(), scores.ravel())
    assert micro_average_precision(labels, scores) == pytest.approx(expected, rel=1e-12)
    # Hand case: scores 0.9 (positive), 0.5 tied (one positive, one negative), 0.1 (positive)
    # -> steps: P=1 at R=1/3, P=2/3 at R=2/3, P=3/4 at R=1: AP = (1 + 2/3 + 3/4) / 3
    hand = micro_average_precision(np.array([1, 1, 0, 1]), np.array([0.9, 0.5, 0.5, 0.1]))
    assert hand == pytest.approx((1 + 2 / 3 + 3 / 4) / 3)
    assert micro_average_precision(np.zeros(4), np.ones(4)) == 0.0


def test_frequency_top_k_breaks_ties_by_bit_index() -> None:
    from packd.metrics import frequency_top_k

    # Bit counts 1, 3, 3, 0, 3: the three-way tie at 3 keeps bits 1 and 2 (the lower indices)
    labels = np.array(
        [[1, 1, 1, 0, 1], [0, 1, 1, 0, 1], [0, 1, 1, 0, 1], [0, 0, 0, 0, 0]], dtype=bool
    )
    assert frequency_top_k(labels, 2).tolist() == [1, 2]
    assert frequency_top_k(labels, 3).tolist() == [1, 2, 4]
    assert frequency_top_k(labels, 4).tolist() == [0, 1, 2, 4]


def test_top_k_differs_from_the_frequency_baseline_on_a_hand_made_score_matrix() -> None:
    from packd.metrics import differs_from_frequency, protocol_metrics, top_k_differs

    frequency_bits = np.array([0, 2])
    scores = np.array(
        [
            [0.9, 0.1, 0.8, 0.0],  # top 2 = {0, 2}: the prior's
            [0.8, 0.1, 0.9, 0.0],  # {2, 0}: the same set in another order
            [0.9, 0.8, 0.1, 0.0],  # {0, 1}: differs
            [0.5, 0.5, 0.5, 0.5],  # all tied: the lower indices {0, 1}: differs
            [0.7, 0.2, 0.2, 0.2],  # tie for second: bit 1 before bit 2: differs
            [0.7, 0.1, 0.3, 0.3],  # tie for second: bit 2 before bit 3: the prior's
            [0.1, 0.2, 0.3, 0.9],  # {2, 3}: differs
        ]
    )
    assert top_k_differs(scores, frequency_bits).tolist() == [
        False, False, True, True, True, False, True,
    ]  # fmt: skip
    # The reference: each row's stable descending sort (ties to the lower index), as a set
    reference = np.sort(np.argsort(-scores, axis=1, kind="stable")[:, :2], axis=1)
    np.testing.assert_array_equal(
        top_k_differs(scores, frequency_bits), (reference != frequency_bits).any(axis=1)
    )
    assert differs_from_frequency(scores, frequency_bits) == {
        "top_k_differs_from_frequency": 4 / 7,
        "top_k_differs_from_frequency_count": 4,
        "frequency_top_k": [0, 2],
    }
    # The frequency baseline's own scores (every row the training frequencies) never differ
    prior = np.tile([0.4, 0.1, 0.4, 0.3], (5, 1))
    assert not top_k_differs(prior, frequency_bits).any()
    # Within protocol_metrics at the prefetch degree, and only when the bits are given
    labels = scores > 0.45
    metrics = protocol_metrics(labels, scores, labels, scores, 2, frequency_bits)
    assert metrics["top_k_differs_from_frequency_count"] == 4
    assert "top_k_differs_from_frequency" not in protocol_metrics(labels, scores, labels, scores)
    with pytest.raises(ValueError, match="degree 3"):
        protocol_metrics(labels, scores, labels, scores, 3, frequency_bits)


@pytest.mark.parametrize("k", [1, 2, 5])
def test_top_k_differs_equals_a_stable_sort_with_many_ties(k: int) -> None:
    from packd.metrics import top_k_differs

    generator = np.random.default_rng(k)
    bits = np.sort(generator.choice(12, size=k, replace=False))
    # Integer scores, the chosen bits 2 higher: often on top, often tied at the boundary
    scores = generator.integers(0, 3, size=(500, 12)).astype(np.float32)
    scores[:, bits] += 2
    reference = np.sort(np.argsort(-scores, axis=1, kind="stable")[:, :k], axis=1)
    expected = (reference != bits).any(axis=1)
    assert expected.any() and not expected.all()
    np.testing.assert_array_equal(top_k_differs(scores, bits), expected)
