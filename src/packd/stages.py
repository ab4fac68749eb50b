"""One function per workflow rule: read inputs, call the package, write outputs atomically.

The scripts under workflow/scripts only unpack the `snakemake` object and call these, so every
stage can be run and tested without Snakemake.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from packd import __version__
from packd.atomic import atomic_path
from packd.cache import CacheLevel

LOG = logging.getLogger("packd")
SPLIT_NAMES = ("train", "val", "test")


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write a text file atomically (see packd.atomic)."""
    with atomic_path(path) as temporary:
        temporary.write_text(text)


def write_json_atomic(path: str | Path, payload: Mapping[str, Any]) -> None:
    """Write JSON atomically (see write_text_atomic)."""
    write_text_atomic(path, json.dumps(payload, indent=2, sort_keys=True, default=_jsonable) + "\n")


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")


def cache_levels(cache_config: Mapping[str, Any]) -> list[CacheLevel]:
    """The cache hierarchy described by the config's `cache` section."""
    line_bytes = cache_config.get("line_bytes", 64)
    return [
        CacheLevel(
            name=level["name"],
            size_bytes=level["size_kib"] * 1024,
            ways=level["ways"],
            line_bytes=line_bytes,
            latency=level.get("latency", 10),
        )
        for level in cache_config["levels"]
    ]


# ----------------------------------------------------------------------------------------------
# Traces


def build_kernel(kernel_dir: str | Path, binary: str | Path, versions: str | Path, variant: str):
    """Compile the graph kernels, instrumented for sancov or plain (for lackey and timing)."""
    from packd.tracing import compile_kernel

    tool_versions = compile_kernel(Path(kernel_dir), Path(binary), instrumented=variant == "sancov")
    write_json_atomic(versions, {"variant": variant, **tool_versions})


def trace_app(
    source: Mapping[str, Any],
    tracing: Mapping[str, Any],
    cache_config: Mapping[str, Any],
    binary: str | None,
    out_path: str | Path,
    log: logging.Logger = LOG,
) -> None:
    """Trace one app's loads, keep those that reach the LLC, and write the Parquet trace."""
    from packd import tracing as tracer
    from packd.traces import llc_trace_from_loads, write_trace_parquet

    max_loads = tracing.get("max_loads")
    metadata: dict[str, Any] = {"packd_version": __version__}
    if "kernel" in source:
        kernel_args = {key: source[key] for key in ("kernel", "graph", "scale", "degree")}
        kernel_args["seed"] = source.get("seed", 1)
        trials = source.get("trials", 1)
        trial_args = ("--trials", str(trials))
        metadata.update(source="kernel", **kernel_args, trials=trials, backend=tracing["backend"])
        versions_path = Path(f"{binary}.json")
        if versions_path.exists():
            metadata["tool_versions"] = json.loads(versions_path.read_text())
        log.info(
            "tracing %s, %d trial(s), with %s (max %s loads)",
            kernel_args,
            trials,
            tracing["backend"],
            max_loads,
        )
        if tracing["backend"] == "sancov":
            loads = tracer.trace_kernel(
                Path(binary), **kernel_args, max_loads=max_loads, extra_args=trial_args
            )
        else:
            # `./name` from the binary's folder, as trace_kernel does: argv[0] is on the stack.
            command = [
                f"./{Path(binary).name}",
                *tracer.kernel_arguments(**kernel_args),
                *trial_args,
            ]
            loads = tracer.trace_command_lackey(
                command,
                max_loads=max_loads,
                roi_symbols=("roi_begin", "roi_end"),
                cwd=Path(binary).resolve().parent,
            )
    else:
        metadata.update(
            source="command",
            command=source["command"],
            env=dict(source.get("env", {})),
            backend="lackey",
        )
        roi = tuple(source["roi"]) if "roi" in source else None
        log.info("tracing command %r with valgrind lackey", source["command"])
        loads = tracer.trace_command_lackey(
            source["command"], max_loads=max_loads, roi_symbols=roi, env=source.get("env")
        )
    log.info("recorded %d loads (%d distinct pcs)", len(loads.addr), len(np.unique(loads.pc)))
    levels = cache_levels(cache_config)
    memory_latency = cache_config.get("memory_latency", 200)
    trace = llc_trace_from_loads(loads.instr_id, loads.pc, loads.addr, levels, memory_latency)
    log.info(
        "%d accesses reach the LLC (%.1f%% of loads)",
        len(trace),
        100 * len(trace) / max(1, len(loads.addr)),
    )
    metadata.update(
        loads_traced=len(loads.addr),
        instr_id_kind=loads.instr_id_kind,
        cycle_kind=(
            "modelled: in-order estimate, each load costs 1 cycle plus the latency of the level "
            "that served it"
        ),
        cache={"levels": [level.__dict__ for level in levels], "memory_latency": memory_latency},
    )
    write_trace_parquet(trace, Path(out_path), metadata)


def import_trace(in_path: str | Path, out_path: str | Path, log: logging.Logger = LOG) -> None:
    """Convert a user's ML-DPC load trace (.txt or .txt.xz) to the project's Parquet trace."""
    from packd.traces import parse_load_trace, write_trace_parquet

    trace = parse_load_trace(Path(in_path))
    log.info("parsed %d accesses from %s", len(trace), in_path)
    metadata = {
        "source": "import",
        "path": str(in_path),
        "cycle_kind": "as recorded by the simulator that wrote the trace",
        "instr_id_kind": "instruction_count",
        "packd_version": __version__,
    }
    write_trace_parquet(trace, Path(out_path), metadata)


def summarize_traces(trace_paths: Sequence[str | Path], out_csv: str | Path) -> pd.DataFrame:
    """One row per app: accesses, LLC misses, distinct pcs, pages and lines, and provenance."""
    from packd.traces import read_trace_parquet, summarize_trace

    rows = []
    for path in trace_paths:
        trace, metadata = read_trace_parquet(Path(path))
        rows.append(
            {
                "app": Path(path).stem,
                **summarize_trace(trace),
                "source": metadata.get("source"),
                "instr_id_kind": metadata.get("instr_id_kind"),
            }
        )
    summary = pd.DataFrame(rows)
    write_text_atomic(out_csv, summary.to_csv(index=False))
    return summary


# ----------------------------------------------------------------------------------------------
# Dataset and clusters


def build_dataset(
    trace_path: str | Path,
    dataset_config: Mapping[str, Any],
    split_paths: Mapping[str, str | Path],
    sizes_path: str | Path,
    seed: int = 0,
    log: logging.Logger = LOG,
) -> dict[str, int]:
    """Split one app's trace by instr_id and write inputs, labels and clustering features."""
    from packd.dataset import build_pieces_arrays, save_split, split_by_instr_id
    from packd.traces import read_trace_parquet

    trace, _ = read_trace_parquet(Path(trace_path))
    max_accesses = dataset_config.get("max_accesses")
    if max_accesses and len(trace) > max_accesses:
        log.info("keeping the first %d of %d LLC accesses", max_accesses, len(trace))
        trace = trace.iloc[:max_accesses]
    split = dataset_config["split"]
    segments = split_by_instr_id(
        trace, split["warmup"], split["train"], split["val"], split.get("val_blocks", 1)
    )
    sizes = {}
    for name, pieces in segments.items():
        arrays = build_pieces_arrays(
            pieces,
            history=dataset_config.get("history", 10),
            look_forward=dataset_config.get("look_forward", 128),
            delta_bound=dataset_config.get("delta_bound", 128),
        )
        if len(arrays["labels"]) == 0:
            raise ValueError(f"{trace_path}: the {name} split has no sample with an in-range delta")
        limit = (dataset_config.get("max_samples") or {}).get(name)
        if limit and len(arrays["labels"]) > limit:
            # Samples carry their own history window, so a seeded random subset of the whole
            # split keeps every phase of the program (the first N would keep only the first).
            rng = np.random.default_rng([seed, SPLIT_NAMES.index(name)])
            keep = np.sort(rng.choice(len(arrays["labels"]), size=limit, replace=False))
            log.info(
                "%s: keeping %d of %d samples, drawn at random", name, limit, len(arrays["labels"])
            )
            arrays = {key: values[keep] for key, values in arrays.items()}
        sizes[name] = len(arrays["labels"])
        log.info(
            "%s: %d accesses in %d piece(s) -> %d samples, %.2f label bits set on average",
            name,
            sum(len(piece) for piece in pieces),
            len(pieces),
            sizes[name],
            arrays["labels"].sum(axis=1).mean(),
        )
        save_split(Path(split_paths[name]), arrays)
    write_json_atomic(sizes_path, sizes)
    return sizes


def cluster(
    split_paths: Mapping[str, str | Path],
    features: str,
    k: int,
    seed: int,
    n_init: int,
    min_cluster_fraction: float,
    assignments_path: str | Path,
    sizes_path: str | Path,
    figure_path: str | Path,
    log: logging.Logger = LOG,
) -> pd.DataFrame:
    """Fit k-means on the training samples' features and assign every sample of every split."""
    from packd.clustering import assign_clusters, cluster_features, fit_clusters
    from packd.dataset import load_split
    from packd.plots import plot_cluster_sizes

    splits = {name: load_split(Path(path)) for name, path in split_paths.items()}
    model = fit_clusters(
        cluster_features(splits["train"], features),
        k=k,
        seed=seed,
        n_init=n_init,
        min_cluster_fraction=min_cluster_fraction,
    )
    for event in model.events:
        log.warning("%s", event)
    frames = []
    for name, arrays in splits.items():
        cluster_ids = assign_clusters(model, cluster_features(arrays, features))
        frames.append(
            pd.DataFrame(
                {"split": name, "sample": np.arange(len(cluster_ids)), "cluster": cluster_ids}
            )
        )
    assignments = pd.concat(frames, ignore_index=True)
    sizes = (
        assignments.groupby(["cluster", "split"])
        .size()
        .unstack(fill_value=0)
        .reindex(index=range(k), columns=["train", "val", "test"], fill_value=0)
    )
    sizes.index.name = "cluster"
    log.info("cluster sizes:\n%s", sizes.to_string())
    _write_parquet_atomic(assignments, assignments_path)
    write_text_atomic(sizes_path, sizes.reset_index().to_csv(index=False))
    plot_cluster_sizes(
        sizes,
        title=f"{Path(assignments_path).parent.name}: {features}, k={k}",
        path=Path(figure_path),
    )
    return assignments


def _write_parquet_atomic(frame: pd.DataFrame, path: str | Path) -> None:
    with atomic_path(path) as temporary:
        frame.to_parquet(temporary, index=False)


def load_cluster_ids(assignments_path: str | Path) -> dict[str, np.ndarray]:
    """Cluster id of every sample, per split, in sample order."""
    assignments = pd.read_parquet(assignments_path)
    return {
        name: group.sort_values("sample")["cluster"].to_numpy(np.int64)
        for name, group in assignments.groupby("split")
    }


# ----------------------------------------------------------------------------------------------
# Teachers, students, evaluation

# A cluster with fewer validation samples than this is validated on the whole validation split,
# so that epoch selection does not rest on a handful of samples.
MIN_CLUSTER_VAL_SAMPLES = 200


def _subset(arrays: Mapping[str, np.ndarray], mask: np.ndarray) -> dict[str, np.ndarray]:
    return {name: values[mask] for name, values in arrays.items()}


def train_teacher(
    split_paths: Mapping[str, str | Path],
    arch: str,
    size: Mapping[str, Any],
    train_config: Mapping[str, Any],
    seed: int,
    checkpoint_path: str | Path,
    app: str,
    clusters_path: str | Path | None = None,
    cluster_id: int | None = None,
    log: logging.Logger = LOG,
) -> None:
    """Train one teacher on one cluster's samples (or the whole app) and save its checkpoint."""
    from packd.checkpoint import save_checkpoint
    from packd.dataset import load_split
    from packd.models import build_model, count_parameters
    from packd.train import resolve_device, seed_everything

    splits = {name: load_split(Path(path)) for name, path in split_paths.items()}
    header: dict[str, Any] = {"arch": arch, "size": dict(size), "role": "teacher", "app": app}
    if clusters_path is not None:
        cluster_ids = load_cluster_ids(clusters_path)
        header["cluster"] = cluster_id
        splits = {
            name: _subset(arrays, cluster_ids[name] == cluster_id)
            for name, arrays in splits.items()
        }
        if len(splits["val"]["labels"]) < MIN_CLUSTER_VAL_SAMPLES:
            log.warning(
                "cluster %d has %d validation samples (< %d): validating on the whole split",
                cluster_id,
                len(splits["val"]["labels"]),
                MIN_CLUSTER_VAL_SAMPLES,
            )
            splits["val"] = load_split(Path(split_paths["val"]))
    n_train = len(splits["train"]["labels"])
    if n_train == 0:
        # The cluster was merged away (see the cluster log): no sample is routed to it.
        log.warning("cluster %s has no training samples: writing an empty teacher", cluster_id)
        save_checkpoint(Path(checkpoint_path), {}, {**header, "empty": True})
        return
    seed_everything(seed)
    model = build_model(arch, size)
    log.info(
        "%s teacher %s: %d parameters, %d training samples",
        arch,
        dict(size),
        count_parameters(model),
        n_train,
    )
    result = _train_phase(
        model,
        (splits["train"]["inputs"], splits["train"]["labels"]),
        splits,
        "bce",
        train_config,
        "teacher",
        arch,
        seed,
        resolve_device(train_config.get("device", "auto")),
        log,
    )
    header.update(
        params=count_parameters(model),
        train_samples=n_train,
        history=result.history,
        best_epoch=result.best_epoch,
        device=str(result.device),
    )
    save_checkpoint(Path(checkpoint_path), result.best_state, header)


def _train_phase(
    model: Any,
    train_data: tuple,
    splits: Mapping[str, Mapping[str, np.ndarray]],
    loss: Any,
    train_config: Mapping[str, Any],
    phase_name: str,
    arch: str,
    seed: int,
    device: Any,
    log: logging.Logger,
) -> Any:
    """train_model with one phase's (teacher or student) budget from the config."""
    from packd.models import init_output_bias
    from packd.train import train_model

    phase = train_config[phase_name]
    if train_config.get("prior_bias", True):
        init_output_bias(model, train_data[1])
    return train_model(
        model,
        train_data,
        (splits["val"]["inputs"], splits["val"]["labels"]),
        test=(splits["test"]["inputs"], splits["test"]["labels"]),
        loss=loss,
        epochs=phase["epochs"],
        lr=phase_learning_rate(train_config, phase_name, arch),
        batch_size=phase["batch_size"],
        patience=phase["patience"],
        min_epochs=phase.get("min_epochs", 1),
        seed=seed,
        device=device,
        amp=train_config.get("amp", "auto"),
        log=log.info,
    )


def phase_learning_rate(train_config: Mapping[str, Any], phase: str, arch: str) -> float:
    """The phase's learning rate, unless train.lr_by_arch sets one for this arch."""
    by_arch = train_config.get("lr_by_arch", {}).get(arch, {})
    return by_arch.get(phase, train_config[phase]["lr"])


def load_teachers(checkpoint_paths: Sequence[str | Path]) -> dict[int, Any]:
    """Teacher models by cluster id (0 for a whole-app teacher); empty ones are left out."""
    from packd.checkpoint import load_checkpoint, model_from_checkpoint

    teachers = {}
    for path in checkpoint_paths:
        header, _ = load_checkpoint(Path(path))
        if not header.get("empty"):
            teachers[header.get("cluster", 0)] = model_from_checkpoint(Path(path))[0]
    return teachers


def train_student(
    split_paths: Mapping[str, str | Path],
    arch: str,
    size: Mapping[str, Any],
    settings: Mapping[str, Any],
    train_config: Mapping[str, Any],
    seed: int,
    checkpoint_path: str | Path,
    app: str,
    method: str,
    teacher_paths: Sequence[str | Path] = (),
    clusters_path: str | Path | None = None,
    log: logging.Logger = LOG,
) -> None:
    """Train the student three ways: PaCKD, standard KD (one teacher) or no KD (labels only)."""
    from packd.checkpoint import save_checkpoint
    from packd.dataset import load_split
    from packd.distill import teacher_soft_logits
    from packd.models import build_model, count_parameters
    from packd.train import resolve_device, seed_everything

    splits = {name: load_split(Path(path)) for name, path in split_paths.items()}
    device = resolve_device(train_config.get("device", "auto"))
    train_inputs, train_labels = splits["train"]["inputs"], splits["train"]["labels"]
    if settings["kind"] == "no_kd":
        loss: Any = "bce"
        train_data: tuple = (train_inputs, train_labels)
    else:
        teachers = load_teachers(teacher_paths)
        if settings["kind"] == "packd":
            routes = load_cluster_ids(clusters_path)["train"]
        else:
            routes = np.zeros(len(train_labels), dtype=np.int64)
        missing = sorted(set(np.unique(routes).tolist()) - set(teachers))
        if missing:
            raise ValueError(f"{method}: samples routed to clusters without a teacher: {missing}")
        log.info(
            "computing soft targets of %d teacher(s) for %d samples",
            len(teachers),
            len(train_labels),
        )
        soft_logits = teacher_soft_logits(
            teachers, train_inputs, routes, batch_size=1024, device=device
        )
        loss = ("kd", settings["alpha"], settings["temperature"])
        train_data = (train_inputs, train_labels, soft_logits)
    seed_everything(seed)
    model = build_model(arch, size)
    log.info("%s student %s (%s): %d parameters", arch, dict(size), method, count_parameters(model))
    result = _train_phase(
        model, train_data, splits, loss, train_config, "student", arch, seed, device, log
    )
    header = {
        "arch": arch,
        "size": dict(size),
        "role": "student",
        "app": app,
        "method": method,
        "settings": dict(settings),
        "params": count_parameters(model),
        "train_samples": len(train_labels),
        "history": result.history,
        "best_epoch": result.best_epoch,
        "device": str(result.device),
    }
    save_checkpoint(Path(checkpoint_path), result.best_state, header)


def save_sample_counts(path: Path, labels: np.ndarray, predicted: np.ndarray) -> None:
    """Per test sample: true positives, false positives, false negatives (for the bootstrap)."""
    counts = np.stack(
        [
            np.count_nonzero(labels & predicted, axis=1),
            np.count_nonzero(~labels & predicted, axis=1),
            np.count_nonzero(labels & ~predicted, axis=1),
        ],
        axis=1,
    ).astype(np.int32)
    with atomic_path(path) as temporary, open(temporary, "wb") as handle:
        np.savez_compressed(handle, counts=counts)


def evaluate(
    split_paths: Mapping[str, str | Path],
    checkpoint_paths: Sequence[str | Path],
    out_path: str | Path,
    app: str,
    arch: str,
    model_name: str,
    clusters_path: str | Path | None = None,
    counts_path: str | Path | None = None,
    latency_repeats: int = 200,
    batch_size: int = 1024,
    device_name: str = "auto",
    log: logging.Logger = LOG,
) -> dict[str, Any]:
    """Score one model (or the routed cluster teachers) on test at the validation threshold."""
    import torch

    from packd.checkpoint import load_checkpoint
    from packd.dataset import load_split
    from packd.distill import teacher_soft_logits
    from packd.metrics import best_threshold, evaluate_scores, latency_per_sample
    from packd.models import count_parameters, model_bytes
    from packd.train import resolve_device

    device = resolve_device(device_name)
    splits = {name: load_split(Path(path)) for name, path in split_paths.items() if name != "train"}
    if clusters_path is not None:
        routes = load_cluster_ids(clusters_path)
    else:
        routes = {
            name: np.zeros(len(arrays["labels"]), np.int64) for name, arrays in splits.items()
        }
    models = load_teachers(checkpoint_paths)
    headers = [load_checkpoint(Path(path))[0] for path in checkpoint_paths]
    headers = [header for header in headers if not header.get("empty")]
    probabilities = {}
    for name, arrays in splits.items():
        logits = teacher_soft_logits(models, arrays["inputs"], routes[name], batch_size, device)
        probabilities[name] = 1.0 / (1.0 + np.exp(-np.asarray(logits, dtype=np.float32)))
    threshold, val_f1 = best_threshold(splits["val"]["labels"], probabilities["val"])
    test_labels = splits["test"]["labels"]
    at_threshold = evaluate_scores(test_labels, probabilities["test"], threshold)
    if counts_path is not None:
        save_sample_counts(Path(counts_path), test_labels, probabilities["test"] >= threshold)
    at_half = evaluate_scores(test_labels, probabilities["test"], 0.5)
    # The authors' protocol: threshold and epoch chosen on test (optimistic; labelled as such).
    test_threshold, test_f1 = best_threshold(test_labels, probabilities["test"])
    at_test_threshold = evaluate_scores(test_labels, probabilities["test"], test_threshold)
    if len(headers) == 1:
        history_test = [epoch.get("test_f1") for epoch in headers[0].get("history", [])]
        history_test = [value for value in history_test if value is not None]
        if history_test:
            test_f1 = max(test_f1, max(history_test))
    params = sum(count_parameters(model) for model in models.values())
    metrics: dict[str, Any] = {
        "app": app,
        "arch": arch,
        "method": model_name,
        "f1": at_threshold["f1"],
        "precision": at_threshold["precision"],
        "recall": at_threshold["recall"],
        "threshold": threshold,
        "val_f1": val_f1,
        "f1_at_0.5": at_half["f1"],
        "test_selected_f1": test_f1,
        "test_selected_threshold": test_threshold,
        "test_selected_precision": at_test_threshold["precision"],
        "test_selected_recall": at_test_threshold["recall"],
        "params": params,
        "bytes": sum(model_bytes(model) for model in models.values()),
        "test_samples": len(test_labels),
        "trained_on": sorted({header.get("device", "unknown") for header in headers}),
        "histories": [header.get("history", []) for header in headers],
        "best_epochs": [header.get("best_epoch") for header in headers],
    }
    # Routed teachers run one model per sample: their latency is the mean of the teachers'.
    cpu = torch.device("cpu")
    for batch, repeats in ((1, latency_repeats), (1024, 5)):
        metrics[f"latency_b{batch}_s"] = float(
            np.mean([latency_per_sample(model, batch, repeats, cpu) for model in models.values()])
        )
    log.info(
        "%s/%s/%s: test F1 %.4f at validation threshold %.3f (F1@0.5 %.4f; authors' protocol %.4f)",
        app,
        arch,
        model_name,
        metrics["f1"],
        threshold,
        metrics["f1_at_0.5"],
        test_f1,
    )
    write_json_atomic(out_path, metrics)
    return metrics
