"""Label offset: do timely labels (dataset.label_offset) buy prefetch coverage and accuracy?

Usage: python benchmarks_scripts/label_offset.py [--results results] [--configfile config.yaml]
       [--seed 1] [--workers 2] [--archs resnet] [--offsets 0 3] [--train-samples 20000]
       [--epochs 6] [--markdown docs/benchmarks/label_offset.md]
Reads a finished run's traces (results/traces/{app}.parquet) and, where present, its learning-rate
choices (the whole-app teacher's selection.json and the no-KD student's no_kd.selection.json of
the seed). For each app, arch and label offset it builds the app's dataset at that offset
(packd.stages.data.build_dataset, the config's dataset section with label_offset overridden and
the training split capped), trains the whole-app teacher and the no-KD student with the config's
recipe (epochs overridden), scores both on test at their validation threshold
(packd.stages.evaluation.evaluate) and replays their prefetches on the test range through the
config's LLC, filter as configured (packd.stages.prefetch.prefetch_app). Next-line and
best-offset run on the same replay for reference; they do not depend on the offset.
"""

from __future__ import annotations

import argparse
import copy
import logging
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import yaml

from packd.benchpage import write_page
from packd.config import with_schema_defaults
from packd.plan import DEFAULT_DISTANCE

if TYPE_CHECKING:
    from packd.stages.prefetch import PrefetchSettings

SCHEMA = Path(__file__).resolve().parents[1] / "workflow/schemas/config.schema.yaml"
# The config's sections this benchmark reads
SECTIONS = ("dataset", "cache", "train", "evaluate")

TITLE = "Label offset: timely labels"
# The replay fills a prefetch issued by access i just before access i + DEFAULT_DISTANCE: a line
# first demanded by accesses i + 1 .. i + DEFAULT_DISTANCE - 1 arrives late. An offset of
# DEFAULT_DISTANCE - 1 makes the label window i + offset + 1 .. start at i + DEFAULT_DISTANCE, the
# first access a prefetch can reach in time.
TIMELY_OFFSET = DEFAULT_DISTANCE - 1
MODELS = ("teacher", "no_kd")
CLASSIC = ("next_line", "best_offset")
COLUMNS = ("f1", "coverage", "accuracy", "issued", "filled", "redundant", "late", "useful")
LOG = logging.getLogger("packd")


def with_defaults(config: dict) -> dict:
    """The config with the sections this benchmark reads checked and their schema defaults
    filled in, as the rules see them."""
    filled = {section: with_schema_defaults(section, config.get(section, {}), SCHEMA)
              for section in SECTIONS}  # fmt: skip
    return {**config, **filled}


def bench_config(config: dict, train_samples: int | None, epochs: int | None) -> dict:
    """The config with the training split capped at train_samples and both training phases cut
    to epochs (min_epochs no more than epochs); None keeps the config's."""
    config = copy.deepcopy(config)
    if train_samples:
        max_samples = dict(config["dataset"]["max_samples"])
        max_samples["train"] = int(train_samples)
        config["dataset"]["max_samples"] = max_samples
    if epochs:
        for phase in ("teacher", "student"):
            settings = config["train"][phase]
            settings["epochs"] = int(epochs)
            settings["min_epochs"] = min(int(settings["min_epochs"]), int(epochs))
    return config


def prefetch_settings(config: dict) -> PrefetchSettings:
    """prefetch_app's settings as the workflow's prefetch rule sets them."""
    from packd.stages.prefetch import PrefetchSettings

    evaluate = config["evaluate"]
    return PrefetchSettings(
        degree=int(evaluate["prefetch_degree"]),
        distance=DEFAULT_DISTANCE,
        max_accesses=evaluate["prefetch_max_accesses"],
        prefetch_filter=bool(evaluate["prefetch_filter"]),
        filter_window=int(evaluate["prefetch_filter_window"]),
        device_name=config["train"]["device"],
    )


def report_row(report: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {**fields, **{key: report[key] for key in COLUMNS if key != "f1"}}


def offset_cell(
    trace_path: Path,
    config: dict,
    app: str,
    arch: str,
    offset: int,
    seed: int,
    folder: Path,
    teacher_selection: Path | None = None,
    student_selection: Path | None = None,
    log: logging.Logger = LOG,
) -> list[dict[str, Any]]:
    """One (app, arch, offset) cell: the dataset at that offset, the whole-app teacher and no-KD
    student trained on it, their test F1 (validation threshold) and their LLC replay.

    teacher_selection / student_selection: selection JSONs whose lr_factor the teacher / student
    trains at (the run's choices); None: factor 1.
    """
    from packd.cell import Cell
    from packd.methods import method_settings
    from packd.stages.data import build_dataset
    from packd.stages.evaluation import evaluate
    from packd.stages.prefetch import prefetch_app
    from packd.stages.training import train_student, train_teacher

    folder.mkdir(parents=True, exist_ok=True)
    dataset_config = {**config["dataset"], "label_offset": int(offset)}
    splits = {name: folder / f"{name}.npz" for name in ("train", "val", "test")}
    build_dataset(
        trace_path, dataset_config, splits, folder / "sizes.json", int(config.get("seed", 0)), log
    )
    sizes, cell = config["models"][arch], Cell(seed, app, arch)
    checkpoints = {name: folder / f"{name}.pt" for name in MODELS}
    train_teacher(
        cell, splits, sizes["teacher"], config["train"], checkpoints["teacher"],
        selection_path=teacher_selection, log=log,
    )  # fmt: skip
    train_student(
        cell, splits, sizes, method_settings("no_kd", config), config["train"],
        checkpoints["no_kd"], "no_kd", chosen_selection_path=student_selection, log=log,
    )  # fmt: skip
    settings = prefetch_settings(config)
    metrics_paths = {name: folder / f"{name}.metrics.json" for name in MODELS}
    f1 = {}
    for name in MODELS:
        metrics = evaluate(
            cell, splits, [checkpoints[name]], metrics_paths[name], name,
            latency_repeats=1, device_name=settings.device_name, degree=settings.degree, log=log,
        )  # fmt: skip
        f1[name] = float(metrics["f1"])
    reports = prefetch_app(
        trace_path,
        config["dataset"],  # the test range does not depend on the label offset
        config["cache"],
        model_checkpoints={f"{arch}/{name}": [checkpoints[name]] for name in MODELS},
        model_metrics={f"{arch}/{name}": metrics_paths[name] for name in MODELS},
        out_paths={
            f"{arch}/{name}": (folder / f"{name}.prefetches.txt", folder / f"{name}.replay.json")
            for name in MODELS
        },
        settings=settings,
        seed=seed,
        log=log,
    )
    return [
        report_row(report, app=app, arch=arch, offset=str(offset), model=report["name"],
                   f1=f1[report["name"]])
        for report in reports
    ]  # fmt: skip


def classic_cell(
    trace_path: Path, config: dict, app: str, folder: Path, log: logging.Logger = LOG
) -> list[dict[str, Any]]:
    """Next-line and best-offset on the same replay (no labels, so no offset)."""
    from packd.stages.prefetch import prefetch_app

    folder.mkdir(parents=True, exist_ok=True)
    reports = prefetch_app(
        trace_path,
        config["dataset"],
        config["cache"],
        model_checkpoints={},
        model_metrics={},
        out_paths={
            f"classic/{name}": (folder / f"{name}.prefetches.txt", folder / f"{name}.replay.json")
            for name in CLASSIC
        },
        settings=prefetch_settings(config),
        log=log,
    )
    return [
        report_row(report, app=app, arch="classic", offset="any", model=report["name"], f1=None)
        for report in reports
    ]


def run_job(job: tuple) -> tuple[str, float, list[dict[str, Any]]]:
    import torch

    kind, args = job
    torch.set_num_threads(int(args["config"]["train"]["threads"]))
    start = time.perf_counter()
    rows = offset_cell(**args) if kind == "model" else classic_cell(**args)
    label = f"{args['app']}/{args.get('arch', 'classic')}/offset {args.get('offset', 'any')}"
    return label, time.perf_counter() - start, rows


def train_cap(config: dict) -> int | str:
    """The training split's sample cap of a config, or "all"."""
    return config["dataset"]["max_samples"]["train"] or "all"


def existing(path: Path) -> Path | None:
    return path if path.exists() else None


def summary_table(frame: pd.DataFrame, offsets: list[int]) -> pd.DataFrame:
    """Each model's figures at every nonzero offset minus its figures at offset 0."""
    models = frame[frame["arch"] != "classic"].set_index(["app", "arch", "model", "offset"])
    rows = []
    for (app, arch, model), cell in models.groupby(level=["app", "arch", "model"]):
        cell = cell.droplevel(["app", "arch", "model"])
        for offset in offsets:
            if offset == 0 or "0" not in cell.index or str(offset) not in cell.index:
                continue
            change = cell.loc[str(offset), list(COLUMNS)] - cell.loc["0", list(COLUMNS)]
            rows.append({"app": app, "arch": arch, "model": model, "offset": f"{offset} - 0",
                         **change.to_dict()})  # fmt: skip
    summary = pd.DataFrame(rows)
    if summary.empty:
        return summary
    counts = [column for column in COLUMNS if column not in ("f1", "coverage", "accuracy")]
    summary[counts] = summary[counts].astype(int)
    order = {name: rank for rank, name in enumerate(MODELS)}
    return summary.sort_values(
        ["app", "arch", "model", "offset"],
        key=lambda column: column.map(order) if column.name == "model" else column,
    )


def page_note(config: dict, run_config: dict, seed: int) -> str:
    """The page's note: config is the benchmark's (budget cut), run_config the run's own."""
    teacher, student = config["train"]["teacher"], config["train"]["student"]
    run_samples = train_cap(run_config)
    run_epochs = [run_config["train"][phase]["epochs"] for phase in ("teacher", "student")]
    settings = prefetch_settings(config)
    filter_text = (
        f"the prefetch filter on (window {settings.filter_window} accesses)"
        if settings.prefetch_filter
        else "the prefetch filter off"
    )
    return (
        f"Per (app, arch, label offset): the app's dataset built at that offset "
        f"(`dataset.label_offset`), the whole-app teacher and the no-KD student trained on it, "
        f"training seed {seed}, each at the learning-rate factor the run chose where its selection "
        f"file exists (else 1). Budget: training split capped at "
        f"{train_cap(config)} samples, teacher "
        f"{teacher['epochs']} and student {student['epochs']} epochs, with the config's "
        f"schedule and patience (the run's: {run_samples} samples, {run_epochs[0]} and "
        f"{run_epochs[1]} epochs; with a smaller budget the offset-0 figures are not the run's "
        f"table). `f1`: test micro-F1 at the validation "
        f"threshold, each offset scored on its own labels (offset k: the deltas of accesses "
        f"i + k + 1 .. i + k + {config['dataset']['look_forward']}), so F1 across "
        f"offsets scores different targets. The replay columns are one stream for every row: the "
        f"test range's first {settings.max_accesses} accesses, degree {settings.degree}, "
        f"{filter_text}, fill distance {DEFAULT_DISTANCE} (`packd.plan.DEFAULT_DISTANCE`): a "
        f"prefetch issued by access i fills just before access i + {DEFAULT_DISTANCE}, so a line "
        f"first demanded by i + 1 .. i + {DEFAULT_DISTANCE - 1} arrives late. The timely offset "
        f"is therefore distance - 1 = {TIMELY_OFFSET}: its label window starts at "
        f"i + {DEFAULT_DISTANCE}, the first access a prefetch can reach in time (offset "
        f"{DEFAULT_DISTANCE} would also drop that one). `accuracy` = useful / filled, `coverage` "
        f"= useful / baseline misses; issued = filled + redundant + late + in flight at the end "
        f"(docs/prefetch.md). `next_line` and `best_offset` (arch `classic`) use no labels, so "
        f"they are the same at every offset; their F1 is not defined."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=Path("results"))
    parser.add_argument("--configfile", type=Path, default=Path("config.yaml"))
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--archs", nargs="+", help="archs to train (default: the config's first)")
    parser.add_argument(
        "--offsets", type=int, nargs="+", default=[0, TIMELY_OFFSET], help="label offsets"
    )
    parser.add_argument(
        "--train-samples", type=int, default=20000, help="training split cap (0: the config's)"
    )
    parser.add_argument(
        "--epochs", type=int, default=6, help="both phases' epochs (0: the config's)"
    )
    parser.add_argument("--markdown", type=Path, help="also write the figures as a Markdown page")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    run_config = with_defaults(yaml.safe_load(args.configfile.read_text()))
    config = bench_config(run_config, args.train_samples, args.epochs)
    archs = args.archs or config["archs"][:1]
    results, seed = args.results, args.seed
    start = time.perf_counter()
    rows, missing = [], []
    with tempfile.TemporaryDirectory(prefix="packd-label-offset-") as scratch:
        jobs = [
            ("classic", {"trace_path": results / f"traces/{app}.parquet", "config": config,
                         "app": app, "folder": Path(scratch) / app / "classic"})
            for app in config["apps"]
        ]  # fmt: skip
        for app in config["apps"]:
            for arch in archs:
                for offset in args.offsets:
                    chosen = {
                        "teacher_selection": existing(
                            results / f"teachers/seed{seed}/{app}/{arch}/selection.json"
                        ),
                        "student_selection": existing(
                            results / f"students/seed{seed}/{app}/{arch}/no_kd.selection.json"
                        ),
                    }
                    if offset == args.offsets[0]:
                        missing += [
                            f"{app}/{arch} {model} (lr factor 1)"
                            for model, path in zip(MODELS, chosen.values(), strict=True)
                            if path is None
                        ]
                    jobs.append(("model", {
                        "trace_path": results / f"traces/{app}.parquet", "config": config,
                        "app": app, "arch": arch, "offset": offset, "seed": seed,
                        "folder": Path(scratch) / app / arch / f"offset{offset}", **chosen,
                    }))  # fmt: skip
        with ProcessPoolExecutor(max_workers=args.workers) as pool:
            for future in as_completed([pool.submit(run_job, job) for job in jobs]):
                label, seconds, job_rows = future.result()
                print(f"done: {label} in {seconds:.0f} s", file=sys.stderr, flush=True)
                rows.extend(job_rows)
    frame = pd.DataFrame(rows)
    frame["offset"] = frame["offset"].astype(str)
    order = {name: rank for rank, name in enumerate((*MODELS, *CLASSIC))}
    frame = frame.sort_values(
        ["app", "arch", "offset", "model"],
        key=lambda column: column.map(order) if column.name == "model" else column,
    )
    fmt = lambda value: f"{value:.4f}"  # noqa: E731
    table = frame.set_index(["app", "arch", "offset", "model"])[list(COLUMNS)]
    summary = summary_table(frame, args.offsets)
    budget = (
        f"training split cap {train_cap(config)} samples, "
        f"teacher {config['train']['teacher']['epochs']} / student "
        f"{config['train']['student']['epochs']} epochs, seed {seed}, archs {', '.join(archs)}"
    )
    parts = [
        f"label offsets {', '.join(map(str, args.offsets))} (timely: {TIMELY_OFFSET}, fill "
        f"distance {DEFAULT_DISTANCE}); {budget}",
        "",
        "test F1 (validation threshold) and replay of the test range, per cell:",
        table.to_string(float_format=fmt, na_rep="-"),
    ]
    if not summary.empty:
        parts += [
            "",
            "change from offset 0, per model:",
            summary.set_index(["app", "arch", "model", "offset"]).to_string(float_format=fmt),
        ]
    if missing:
        parts += ["", f"no learning-rate choice in the run for: {', '.join(missing)}"]
    parts += ["", f"wall time {time.perf_counter() - start:.0f} s with {args.workers} workers"]
    printed = "\n".join(parts)
    print(printed)
    if args.markdown:
        write_page(args.markdown, TITLE, page_note(config, run_config, seed), printed)


if __name__ == "__main__":
    main()
