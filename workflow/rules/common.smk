from pathlib import Path

from packd.config import validate_config
from packd.methods import (
    METHODS,
    evaluated_model_regex,
    method_settings,
    sweep_method_name,
    trained_model_regex,
)

# Stop at once, naming the key, on an unknown key, a wrong type or an impossible value.
validate_config(config, Path(workflow.basedir) / "workflow/schemas/config.schema.yaml")

ARCHS = config["archs"]
APPS = list(config["apps"])
EVALUATED_MODELS = list(METHODS)
SWEEPS = ["k", "kd", "features"]


def apps_of_kind(kind):
    """Names of the apps whose source is of this kind: kernel, command or import."""
    return [name for name, source in config["apps"].items() if kind in source]


def alternatives(names):
    """A wildcard regex matching exactly these names (and nothing when there are none)."""
    return "|".join(names) if names else "(?!)"


wildcard_constraints:
    app=alternatives(APPS),
    arch=alternatives(ARCHS),
    split="train|val|test",
    features="[adi]",
    k=r"\d+",
    c=r"\d+",
    variant="sancov|plain",
    sweep=alternatives(SWEEPS),
    method=trained_model_regex(),
    model=evaluated_model_regex(),


def get_traced_app_regex():
    return alternatives(apps_of_kind("kernel") + apps_of_kind("command"))


def get_imported_app_regex():
    return alternatives(apps_of_kind("import"))


def get_app_source(wildcards):
    return config["apps"][wildcards.app]


def get_kernel_binary(wildcards):
    """The compiled graph kernels the app needs (instrumented for sancov, plain for lackey) and
    their tool versions, which the trace's metadata records."""
    source = config["apps"][wildcards.app]
    if "kernel" not in source:
        return {}
    variant = "sancov" if config["tracing"]["backend"] == "sancov" else "plain"
    binary = f"results/bin/graphkernels-{variant}"
    return {"binary": binary, "versions": f"{binary}.json"}


def get_import_path(wildcards):
    return config["apps"][wildcards.app]["import"]


def get_dataset_splits(wildcards):
    return {
        split: f"results/datasets/{wildcards.app}/{split}.npz"
        for split in ("train", "val", "test")
    }


def get_default_clusters(wildcards):
    features, k = config["cluster"]["features"], config["cluster"]["k"]
    return f"results/clusters/{wildcards.app}/{features}-k{k}.parquet"


def get_cluster_teachers(app, arch, features, k):
    """One teacher checkpoint per cluster of this feature set and k."""
    return [
        f"results/teachers/{app}/{arch}/{features}-k{k}/c{c}.pt" for c in range(int(k))
    ]


def get_method_settings(method):
    """What a training job needs of a method: network, soft targets, clusters, alpha and T."""
    return method_settings(method, config)


def get_student_inputs(wildcards):
    """The data, and for a distilled method its teachers (and clusters to route by)."""
    settings = get_method_settings(wildcards.method)
    inputs = get_dataset_splits(wildcards)
    if settings["soft_targets"] == "cluster_teachers":
        inputs["clusters"] = (
            f"results/clusters/{wildcards.app}/{settings['features']}-k{settings['k']}.parquet"
        )
        inputs["teachers"] = get_cluster_teachers(
            wildcards.app, wildcards.arch, settings["features"], settings["k"]
        )
    elif settings["soft_targets"] == "whole_app_teacher":
        inputs["teachers"] = [
            f"results/teachers/{wildcards.app}/{wildcards.arch}/all.pt"
        ]
    return inputs


def get_evaluate_inputs(wildcards):
    """The checkpoint(s) behind one evaluated model, with the data to score them on."""
    app, arch, model = wildcards.app, wildcards.arch, wildcards.model
    inputs = get_dataset_splits(wildcards)
    role = METHODS[model].role if model in METHODS else "student"
    if role == "teacher":
        inputs["checkpoints"] = [f"results/teachers/{app}/{arch}/all.pt"]
    elif role == "routed_teachers":
        features, k = config["cluster"]["features"], config["cluster"]["k"]
        inputs["checkpoints"] = get_cluster_teachers(app, arch, features, k)
        inputs["clusters"] = get_default_clusters(wildcards)
    else:
        inputs["checkpoints"] = [f"results/students/{app}/{arch}/{model}.pt"]
    return inputs


def get_main_metrics():
    return expand(
        "results/metrics/{app}/{arch}/{model}.json",
        app=APPS,
        arch=ARCHS,
        model=EVALUATED_MODELS,
    )


def get_main_counts():
    return expand(
        "results/metrics/{app}/{arch}/{model}.counts.npz",
        app=APPS,
        arch=ARCHS,
        model=EVALUATED_MODELS,
    )


def get_sweep_methods(sweep):
    """Student methods that one sweep compares, each named by its settings."""
    cluster, kd, sweeps = config["cluster"], config["kd"]["packd"], config["sweeps"]
    if sweep == "k":
        grid = [
            (cluster["features"], k, kd["alpha"], kd["temperature"])
            for k in sweeps["k"]
        ]
    elif sweep == "features":
        grid = [
            (f, cluster["k"], kd["alpha"], kd["temperature"])
            for f in sweeps["features"]
        ]
    else:
        grid = [
            (cluster["features"], cluster["k"], alpha, temperature)
            for alpha in sweeps["alpha"]
            for temperature in sweeps["temperature"]
        ]
    return [sweep_method_name(*settings) for settings in grid]


def get_sweep_metrics(wildcards):
    return expand(
        "results/metrics/{app}/{arch}/{model}.json",
        app=APPS,
        arch=ARCHS,
        model=get_sweep_methods(wildcards.sweep),
    )


def get_sweep_output():
    return expand(
        ["results/tables/sweep_{sweep}.csv", "results/figures/f1_vs_{sweep}.png"],
        sweep=SWEEPS,
    )


def get_train_threads():
    return config["train"]["threads"]


def get_gpus():
    """Ask the scheduler for a GPU (training and evaluation) only when the config insists on
    CUDA."""
    return 1 if config["train"]["device"] == "cuda" else 0


def get_train_mem_mb(wildcards, attempt):
    """Datasets are small next to PyTorch itself; grow with the training samples kept."""
    samples = config["dataset"].get("max_samples", {}).get("train") or 2_000_000
    return int(1500 + samples * 0.02) * attempt


def get_train_runtime(phase):
    """Minutes for one training job, from its epoch budget (generous: 2 min per epoch)."""

    def runtime(wildcards, attempt):
        return (10 + 2 * config["train"][phase]["epochs"]) * attempt

    return runtime


def get_trace_output():
    return ["results/traces/summary.csv", *expand("results/traces/{app}.png", app=APPS)]


def get_final_output():
    final_output = [
        *get_trace_output(),
        "results/tables/main.csv",
        "results/tables/main.md",
        "results/tables/main_summary.csv",
        "results/tables/main_summary.md",
        "results/tables/compression.csv",
        "results/tables/compression.md",
        "results/tables/significance.csv",
        "results/tables/significance.md",
        "results/figures/training_curves.png",
        "results/figures/main_f1.png",
    ]
    if config["sweeps"]["run"]:
        final_output += get_sweep_output()
    return final_output


KERNEL_DIR = Path(workflow.basedir) / "workflow" / "kernels"


def get_kernel_sources():
    """The C sources and headers of the graph kernels and the tracer runtime."""
    return sorted(str(path) for path in KERNEL_DIR.glob("*.[ch]"))


def get_teacher_size(wildcards):
    return config["models"][wildcards.arch]["teacher"]


def get_student_size(wildcards):
    return config["models"][wildcards.arch]["student"]


def get_method_settings_of_job(wildcards):
    return get_method_settings(wildcards.method)
