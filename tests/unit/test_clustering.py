import numpy as np
import pytest

from packd.clustering import (
    ClusterModel,
    assign_clusters,
    cluster_features,
    fit_clusters,
    hash_pcs_16bit,
    load_centroids,
    route_samples,
    save_centroids,
)


def _arrays(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    # two address regions far apart, so clustering on "a" has an obvious answer
    bases = np.where(rng.random(n) < 0.5, 1 << 30, 1 << 34)
    block_addresses = bases[:, None] + rng.integers(0, 1000, size=(n, 10))
    return {
        "block_addresses": block_addresses.astype(np.int64),
        "pcs": rng.integers(0x400000, 0x4FFFFF, size=(n, 10)).astype(np.uint64),
        "deltas": np.diff(block_addresses, axis=1).astype(np.int64),
    }


def test_cluster_features_per_set():
    arrays = _arrays(50)
    assert cluster_features(arrays, "a").shape == (50, 10)
    pcs = cluster_features(arrays, "i")
    assert pcs.shape == (50, 10) and pcs.min() >= 0 and pcs.max() < 1
    np.testing.assert_array_equal(cluster_features(arrays, "d"), arrays["deltas"])
    assert cluster_features(arrays, "d").dtype == np.float64


def test_hash_pcs_uses_high_bits():
    assert hash_pcs_16bit(np.array([0x1_0000], np.uint64))[0] == 1
    assert hash_pcs_16bit(np.array([0x1234], np.uint64))[0] == 0x1234


def test_bad_feature_set_lists_valid_ones():
    with pytest.raises(ValueError, match="'a'.*'i'.*'d'"):
        cluster_features(_arrays(5), "x")


def test_fit_assign_deterministic_for_fixed_seed():
    train, test = _arrays(400, seed=1), _arrays(100, seed=2)
    for feature_set in ("a", "i", "d"):
        first = fit_clusters(cluster_features(train, feature_set), k=3, seed=7)
        second = fit_clusters(cluster_features(train, feature_set), k=3, seed=7)
        np.testing.assert_array_equal(first.centers, second.centers)
        np.testing.assert_array_equal(
            assign_clusters(first, cluster_features(test, feature_set)),
            assign_clusters(second, cluster_features(test, feature_set)),
        )


def test_address_clusters_separate_regions_and_assign_matches_fit():
    train = _arrays(400, seed=1)
    features = cluster_features(train, "a")
    model = fit_clusters(features, k=2, seed=0)
    ids = assign_clusters(model, features)
    assert ids.dtype == np.int64
    high_region = train["block_addresses"][:, 0] >= 1 << 34
    # each region is exactly one cluster
    assert len(set(ids[high_region])) == 1 and len(set(ids[~high_region])) == 1
    assert ids[high_region][0] != ids[~high_region][0]
    np.testing.assert_array_equal(np.bincount(ids, minlength=2), model.train_counts)


def test_assign_rejects_other_feature_width():
    model = fit_clusters(cluster_features(_arrays(50), "a"), k=2, seed=0)
    with pytest.raises(ValueError, match="columns"):
        assign_clusters(model, cluster_features(_arrays(50), "d"))  # 9 columns, not 10


def test_tiny_cluster_merged_with_event():
    # Three distinct points: k-means puts a centroid on each, and the third holds 5 of 2005
    # samples (< 1%), so it is merged away.
    features = np.vstack(
        [np.zeros((1000, 2)), np.full((1000, 2), 100.0), np.full((5, 2), 10_000.0)]
    )
    model = fit_clusters(features, k=3, seed=0, min_cluster_fraction=0.01)
    assert model.surviving.sum() == 2
    tiny_id = int(np.flatnonzero(~model.surviving)[0])
    assert model.train_counts[tiny_id] == 5
    assert len(model.events) == 1
    assert f"cluster {tiny_id} had 5 of 2005 train samples" in model.events[0]
    assert "merged into cluster" in model.events[0]
    ids = assign_clusters(model, features)
    assert tiny_id not in set(ids.tolist())  # ids stay 0..k-1; the merged one gets nothing
    assert set(ids.tolist()) <= set(range(3))
    assert ids[-5:].tolist() == [ids[1000]] * 5  # tiny points went to the nearer survivor (b)


def test_far_outliers_do_not_take_a_centroid():
    """A handful of stack-like addresses far above the heap must not become their own cluster."""
    rng = np.random.default_rng(0)
    heap_a = rng.normal(0, 1, size=(1000, 2))
    heap_b = rng.normal(100, 1, size=(1000, 2))
    stack = rng.normal(2.0**40, 1, size=(5, 2))
    model = fit_clusters(np.vstack([heap_a, heap_b, stack]), k=2, seed=0)
    assert model.surviving.all() and not model.events
    ids = assign_clusters(model, np.vstack([heap_a, heap_b]))
    assert len(set(ids[:1000].tolist())) == 1 and len(set(ids[1000:].tolist())) == 1
    assert ids[0] != ids[1000]


def test_cluster_model_dict_round_trip():
    model = fit_clusters(cluster_features(_arrays(60), "i"), k=2, seed=3)
    restored = ClusterModel.from_dict(model.to_dict())
    features = cluster_features(_arrays(30, seed=5), "i")
    np.testing.assert_array_equal(
        assign_clusters(model, features), assign_clusters(restored, features)
    )


@pytest.mark.parametrize("feature_set", ["a", "i", "d"])
def test_routing_from_saved_centroids_equals_the_fitted_models_assignment(tmp_path, feature_set):
    train, later = _arrays(300, seed=1), _arrays(200, seed=2)
    model = fit_clusters(cluster_features(train, feature_set), k=3, seed=4, n_init=2)
    path = tmp_path / "centroids.json"
    save_centroids(path, model, feature_set)
    restored, restored_set = load_centroids(path)
    assert restored_set == feature_set
    np.testing.assert_array_equal(restored.centers, model.centers)  # exact, raw addresses too
    np.testing.assert_array_equal(restored.quantiles, model.quantiles)
    for arrays in (train, later):
        expected = assign_clusters(model, cluster_features(arrays, feature_set))
        np.testing.assert_array_equal(route_samples(path, arrays), expected)
    empty = {key: values[:0] for key, values in later.items()}
    assert route_samples(path, empty).shape == (0,)
