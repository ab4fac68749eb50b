"""K-means clustering for PaCKD: features, fitting with tiny-cluster merging, assignment, and
the saved centroids that route any later sample (a replay's stream) the same way."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from packd.atomic import write_json_atomic

if TYPE_CHECKING:  # imported where frames are built: training jobs only read assignments
    import pandas as pd

FEATURE_SETS = {
    "a": "past block addresses (raw)",
    "i": "past PCs hashed to 16 bits, / 2**16",
    "d": "past block deltas",
}


def hash_pcs_16bit(pcs: np.ndarray) -> np.ndarray:
    """XOR-fold 64-bit PCs to 16 bits (keeps high bits' information, unlike pc & 0xFFFF)."""
    pcs = np.asarray(pcs).astype(np.uint64)
    folded = pcs ^ (pcs >> np.uint64(16)) ^ (pcs >> np.uint64(32)) ^ (pcs >> np.uint64(48))
    return folded & np.uint64(0xFFFF)


def cluster_features(arrays: dict[str, np.ndarray], feature_set: str) -> np.ndarray:
    """Clustering features, float64 (n, d), from a split's arrays; the same for fit and assign."""
    if feature_set == "a":
        # Raw, as the authors did; fit_clusters maps every column to train quantiles first
        return np.asarray(arrays["block_addresses"], dtype=np.float64)
    if feature_set == "i":
        return hash_pcs_16bit(arrays["pcs"]).astype(np.float64) / 2**16
    if feature_set == "d":
        return np.asarray(arrays["deltas"], dtype=np.float64)
    valid = ", ".join(f"'{name}' ({meaning})" for name, meaning in FEATURE_SETS.items())
    raise ValueError(f"unknown feature set '{feature_set}'; valid: {valid}")


@dataclass
class ClusterModel:
    """K-means centroids; samples go to the nearest surviving (non-merged) centroid."""

    centers: np.ndarray  # (k, d) float64
    surviving: np.ndarray  # (k,) bool: False for merged tiny/empty clusters
    train_counts: np.ndarray  # (k,) int64: train samples per cluster before merging
    events: list[str] = field(default_factory=list)
    quantiles: np.ndarray | None = None  # (q, d): train quantiles of each raw feature column

    @property
    def k(self) -> int:
        """Number of cluster ids (including merged ones, which get no samples)."""
        return int(self.centers.shape[0])

    def to_dict(self) -> dict:
        """JSON-able form."""
        return {
            "centers": self.centers.tolist(),
            "surviving": self.surviving.tolist(),
            "train_counts": self.train_counts.tolist(),
            "events": list(self.events),
            "quantiles": None if self.quantiles is None else self.quantiles.tolist(),
        }

    @classmethod
    def from_dict(cls, stored: dict) -> ClusterModel:
        """Inverse of to_dict."""
        return cls(
            centers=np.asarray(stored["centers"], dtype=np.float64),
            surviving=np.asarray(stored["surviving"], dtype=bool),
            train_counts=np.asarray(stored["train_counts"], dtype=np.int64),
            events=list(stored["events"]),
            quantiles=(
                None
                if stored.get("quantiles") is None
                else np.asarray(stored["quantiles"], dtype=np.float64)
            ),
        )


# Raw features are heavy-tailed: a few stack addresses lie 2^40 blocks above the heap, and one
# jump between them is a delta of that size. K-means on raw values then spends a centroid on
# those outliers (a cluster of a handful of samples). Mapping each column to its rank among the
# training values (an empirical CDF in [0, 1], fitted on train only) keeps the order of the
# values and the same features for fit and assign, but lets the bulk of the data shape the
# clusters.
QUANTILE_GRID = np.linspace(0.0, 1.0, 1001)


def fit_quantiles(train_features: np.ndarray) -> np.ndarray:
    """Train quantiles of each column, (len(QUANTILE_GRID), d)."""
    return np.quantile(train_features, QUANTILE_GRID, axis=0)


def to_ranks(features: np.ndarray, quantiles: np.ndarray) -> np.ndarray:
    """Each column mapped through the training empirical CDF to [0, 1]."""
    ranks = np.empty_like(features, dtype=np.float64)
    for column in range(features.shape[1]):
        ranks[:, column] = np.interp(features[:, column], quantiles[:, column], QUANTILE_GRID)
    return ranks


def _nearest(features: np.ndarray, centers: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    """Index of the nearest allowed center per row (exact differences: raw addresses are big)."""
    distances = np.full((features.shape[0], centers.shape[0]), np.inf)
    for cluster in np.flatnonzero(allowed):  # one center at a time keeps memory at O(n * d)
        distances[:, cluster] = ((features - centers[cluster]) ** 2).sum(axis=1)
    return distances.argmin(axis=1).astype(np.int64)


def fit_clusters(
    train_features: np.ndarray,
    k: int,
    seed: int,
    n_init: int = 10,
    min_cluster_fraction: float = 0.01,
) -> ClusterModel:
    """Fit k-means++ on train features; merge clusters under min_cluster_fraction away."""
    train_features = np.asarray(train_features, dtype=np.float64)
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if train_features.shape[0] < k:
        raise ValueError(f"cannot fit {k} clusters on {train_features.shape[0]} samples")
    quantiles = fit_quantiles(train_features)
    train_features = to_ranks(train_features, quantiles)
    # scikit-learn costs about 0.9 s to import; only the clustering job needs it, not every
    # training job that reads cluster ids from this module.
    from sklearn.cluster import KMeans

    kmeans = KMeans(n_clusters=k, init="k-means++", n_init=n_init, random_state=seed)
    kmeans.fit(train_features)
    centers = kmeans.cluster_centers_.astype(np.float64)
    all_clusters = np.ones(k, dtype=bool)
    train_counts = np.bincount(_nearest(train_features, centers, all_clusters), minlength=k)
    n_train = train_features.shape[0]
    surviving = (train_counts > 0) & (train_counts >= min_cluster_fraction * n_train)
    events = []
    if not surviving.any():
        # Every cluster is tiny only when min_cluster_fraction > 1/k; keep the largest one
        surviving[int(train_counts.argmax())] = True
    for cluster in np.flatnonzero(~surviving):
        nearest_survivor = int(_nearest(centers[cluster : cluster + 1], centers, surviving)[0])
        events.append(
            f"cluster {cluster} had {train_counts[cluster]} of {n_train} train samples "
            f"(<{min_cluster_fraction:.0%}): merged into cluster {nearest_survivor} "
            "(its samples go to their nearest surviving centroid)"
        )
    return ClusterModel(centers, surviving, train_counts.astype(np.int64), events, quantiles)


def assign_clusters(model: ClusterModel, features: np.ndarray) -> np.ndarray:
    """Cluster id (int64) of each row: its nearest surviving centroid."""
    features = np.asarray(features, dtype=np.float64)
    if features.shape[1] != model.centers.shape[1]:
        raise ValueError(
            f"features have {features.shape[1]} columns, the model {model.centers.shape[1]}"
        )
    if model.quantiles is not None:
        features = to_ranks(features, model.quantiles)
    return _nearest(features, model.centers, model.surviving)


def save_centroids(path: str | Path, model: ClusterModel, feature_set: str) -> None:
    """The fitted model (centroids, merged clusters, train quantiles) and its feature set, as
    JSON: all that routing a sample needs. JSON floats round-trip float64 exactly."""
    write_json_atomic(path, {"feature_set": feature_set, **model.to_dict()})


def load_centroids(path: str | Path) -> tuple[ClusterModel, str]:
    """The model and feature set that save_centroids wrote."""
    stored = json.loads(Path(path).read_text())
    return ClusterModel.from_dict(stored), str(stored["feature_set"])


def route_samples(centroids_path: str | Path, arrays: Mapping[str, np.ndarray]) -> np.ndarray:
    """Cluster id (int64) of every sample of arrays (a split's, or a stream's samples) from the
    saved centroids: for the cluster rule's own samples, the cluster it assigned them."""
    model, feature_set = load_centroids(centroids_path)
    return assign_clusters(model, cluster_features(dict(arrays), feature_set))


def load_cluster_ids(assignments_path: str | Path) -> dict[str, np.ndarray]:
    """Cluster id of every sample, per split, in sample order."""
    import pyarrow.parquet as pq  # without pandas: 0.2 s less start-up per training job

    table = pq.read_table(assignments_path, columns=["split", "sample", "cluster"])
    splits = table.column("split").to_numpy(zero_copy_only=False)
    samples = table.column("sample").to_numpy()
    clusters = table.column("cluster").to_numpy().astype(np.int64)
    cluster_ids = {}
    for name in np.unique(splits):
        rows = np.flatnonzero(splits == name)
        cluster_ids[str(name)] = clusters[rows[np.argsort(samples[rows], kind="stable")]]
    return cluster_ids


def cluster_assignments(
    model: ClusterModel, features_by_split: dict[str, np.ndarray]
) -> pd.DataFrame:
    """Long form (split, sample, cluster) for every sample of every split."""
    import pandas as pd

    frames = []
    for name, features in features_by_split.items():
        cluster_ids = assign_clusters(model, features)
        frames.append(
            pd.DataFrame(
                {"split": name, "sample": np.arange(len(cluster_ids)), "cluster": cluster_ids}
            )
        )
    return pd.concat(frames, ignore_index=True)


def cluster_sizes(assignments: pd.DataFrame, k: int) -> pd.DataFrame:
    """Samples per cluster (rows 0..k-1) and split (train, val, test columns)."""
    sizes = (
        assignments.groupby(["cluster", "split"])
        .size()
        .unstack(fill_value=0)
        .reindex(index=range(k), columns=["train", "val", "test"], fill_value=0)
    )
    sizes.index.name = "cluster"
    return sizes


# A cluster with fewer validation samples than this is validated on the whole validation split,
# so that epoch selection does not rest on a handful of samples.
MIN_CLUSTER_VAL_SAMPLES = 200


def cluster_splits(
    splits: dict[str, dict[str, np.ndarray]],
    cluster_ids: dict[str, np.ndarray],
    cluster_id: int,
    min_val_samples: int = MIN_CLUSTER_VAL_SAMPLES,
) -> tuple[dict[str, dict[str, np.ndarray]], bool]:
    """One cluster's samples of every split, and whether validation fell back to the whole
    split (the cluster had fewer than min_val_samples validation samples)."""
    from packd.dataset import subset_samples

    own = {
        name: subset_samples(arrays, cluster_ids[name] == cluster_id)
        for name, arrays in splits.items()
    }
    small = len(own["val"]["labels"]) < min_val_samples
    if small:
        own["val"] = splits["val"]
    return own, small
