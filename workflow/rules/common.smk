import sys
from pathlib import Path

# Light modules only: building the DAG must not import torch or numba (tests/unit/test_plan.py).
from packd.config import validate_config
from packd.plan import (
    CLASSIC_PREFETCHERS,
    DEFAULT_DISTANCE,
    block_count,
    block_priorities,
    command_program_path,
    replacement_size_of,
)
from packd.methods import (
    BLOCKWISE_SIZE,
    BudgetVariant,
    SweepVariant,
    FRONTIER_METHOD_REGEX,
    METHODS,
    SWEEP_METHOD_REGEX,
    checkpoint_paths,
    evaluated_model_regex,
    method_of,
    names_in_folder,
    method_settings,
    trained_model_regex,
)

# Stop at once, naming the key, on an unknown key, a wrong type or an impossible value.
validate_config(config, Path(workflow.basedir) / "workflow/schemas/config.schema.yaml")

ARCHS = config["archs"]
APPS = list(config["apps"])
EVALUATED_MODELS = config.get("methods") or list(METHODS)
SWEEPS = ["k", "kd", "features"]
# Each training seed replicates clustering, every model's initialisation and its batch order; the
# traces and datasets are shared (the dataset's random subset takes `seed`).
SEEDS = config.get("seeds") or [config["seed"]]
# The whole-app teacher's learning rate is chosen on this seed; the others train at its choice.
SELECTION_SEED = SEEDS[0]


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
    seed=alternatives([str(seed) for seed in SEEDS]),
    features="[adi]",
    k=r"\d+",
    c=r"\d+",
    factor=r"[0-9.]+",
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
    if "command" in source:
        # A rebuilt program must be traced again.
        program = command_program_path(source["command"], Path(get_command_dir()))
        return {"program": program[0]} if program else {}
    if "kernel" not in source:
        return {}
    variant = "sancov" if config["tracing"]["backend"] == "sancov" else "plain"
    binary = f"results/bin/graphkernels-{variant}"
    return {"binary": binary, "versions": f"{binary}.json"}


def get_command_dir():
    """The folder an app's relative command resolves against and runs in: the config file's."""
    if workflow.configfiles:
        return str(Path(workflow.configfiles[-1]).resolve().parent)
    return str(Path.cwd())


def get_import_path(wildcards):
    return config["apps"][wildcards.app]["import"]


def get_dataset_splits(wildcards):
    return {
        split: f"results/datasets/{wildcards.app}/{split}.npz"
        for split in ("train", "val", "test")
    }


def get_seed(wildcards):
    return int(wildcards.seed)


def get_default_clusters(wildcards):
    features, k = config["cluster"]["features"], config["cluster"]["k"]
    return (
        f"results/clusters/seed{wildcards.seed}/{wildcards.app}/{features}-k{k}.parquet"
    )


def get_default_centroids(wildcards):
    """The fitted clusters behind get_default_clusters, to route samples outside the splits."""
    features, k = config["cluster"]["features"], config["cluster"]["k"]
    return f"results/clusters/seed{wildcards.seed}/{wildcards.app}/{features}-k{k}.centroids.json"


def get_cluster_teachers(seed, app, arch, features, k):
    """One teacher checkpoint per cluster of this feature set and k."""
    return [
        f"results/teachers/seed{seed}/{app}/{arch}/{features}-k{k}/c{c}.pt"
        for c in range(int(k))
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
            f"results/clusters/seed{wildcards.seed}/{wildcards.app}/"
            f"{settings['features']}-k{settings['k']}.parquet"
        )
        inputs["teachers"] = get_cluster_teachers(
            wildcards.seed,
            wildcards.app,
            wildcards.arch,
            settings["features"],
            settings["k"],
        )
    elif settings["soft_targets"] == "whole_app_teacher":
        inputs["teachers"] = [
            f"results/teachers/seed{wildcards.seed}/{wildcards.app}/{wildcards.arch}/all.pt"
        ]
    return inputs


def get_evaluate_inputs(wildcards):
    """The checkpoint(s) behind one evaluated model, with the data to score them on (and the
    clusters that route samples to the cluster teachers)."""
    features, k = config["cluster"]["features"], config["cluster"]["k"]
    inputs = get_dataset_splits(wildcards)
    inputs["checkpoints"] = checkpoint_paths(
        wildcards.model, wildcards.seed, wildcards.app, wildcards.arch, features, k
    )
    if method_of(wildcards.model).role == "routed_teachers":
        inputs["clusters"] = get_default_clusters(wildcards)
    return inputs


def get_evaluate_cell_inputs(wildcards):
    """The data, every main-table model's checkpoint(s) (named by the model) and the clusters
    that route samples to the cluster teachers."""
    features, k = config["cluster"]["features"], config["cluster"]["k"]
    inputs = get_dataset_splits(wildcards)
    for model in EVALUATED_MODELS:
        inputs[model] = checkpoint_paths(
            model, wildcards.seed, wildcards.app, wildcards.arch, features, k
        )
    inputs["clusters"] = get_default_clusters(wildcards)
    return inputs


def get_single_model_regex():
    """Models that `evaluate` scores one job each (every model outside the main table)."""
    outside = [model for model in METHODS if model not in EVALUATED_MODELS]
    return "|".join([*outside, SWEEP_METHOD_REGEX, FRONTIER_METHOD_REGEX])


def get_main_metrics():
    return expand(
        "results/metrics/seed{seed}/{app}/{arch}/{model}.json",
        seed=SEEDS,
        app=APPS,
        arch=ARCHS,
        model=EVALUATED_MODELS,
    )


def get_selections():
    """Every learning-rate choice of the main table's trained models: the whole-app teacher's
    and each student-folder method's (routed teachers reuse the teacher's; blockwise trains
    at its own settings)."""
    selections = expand(
        "results/teachers/seed{seed}/{app}/{arch}/selection.json",
        seed=SEEDS,
        app=APPS,
        arch=ARCHS,
    )
    students = [
        model for model in EVALUATED_MODELS if method_of(model).folder == "students"
    ]
    selections += expand(
        "results/students/seed{seed}/{app}/{arch}/{method}.selection.json",
        seed=SEEDS,
        app=APPS,
        arch=ARCHS,
        method=students,
    )
    return selections


def get_sweep_variants(sweep):
    """The PaCKD variants that one sweep compares (their names: their student methods')."""
    cluster, kd, sweeps = config["cluster"], config["kd"]["packd"], config["sweeps"]
    if sweep == "k":
        return [
            SweepVariant(cluster["features"], k, kd["alpha"], kd["temperature"])
            for k in sweeps["k"]
        ]
    if sweep == "features":
        return [
            SweepVariant(features, cluster["k"], kd["alpha"], kd["temperature"])
            for features in sweeps["features"]
        ]
    return [
        SweepVariant(cluster["features"], cluster["k"], alpha, temperature)
        for alpha in sweeps["alpha"]
        for temperature in sweeps["temperature"]
    ]


def get_sweep_variants_of_job(wildcards):
    return get_sweep_variants(wildcards.sweep)


def get_sweep_metrics(wildcards):
    return expand(
        "results/metrics/seed{seed}/{app}/{arch}/{model}.json",
        seed=SEEDS,
        app=APPS,
        arch=ARCHS,
        model=[variant.name for variant in get_sweep_variants(wildcards.sweep)],
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
    samples = config["dataset"]["max_samples"]["train"] or 2_000_000
    return int(1500 + samples * 0.02) * attempt


def get_train_runtime(phase):
    """Minutes for one training job, from its epoch budget (generous: 2 min per epoch)."""

    def runtime(wildcards, attempt):
        return (10 + 2 * config["train"][phase]["epochs"]) * attempt

    return runtime


def get_trace_output():
    return ["results/traces/summary.csv", *expand("results/traces/{app}.png", app=APPS)]


def get_config_name():
    """The config file this run read (config.yaml unless --configfile)."""
    if workflow.configfiles:
        return Path(workflow.configfiles[-1]).name
    return "config.yaml"


def get_final_output():
    final_output = [
        *get_trace_output(),
        "results/tables/main.csv",
        "results/tables/main.md",
        "results/tables/main_summary.csv",
        "results/tables/main_summary.md",
        "results/tables/ceiling.csv",
        "results/tables/learnability.csv",
        "results/tables/learnability.md",
        "results/tables/selection.csv",
        "results/tables/compression.csv",
        "results/tables/compression.md",
        "results/tables/significance.csv",
        "results/tables/significance.md",
        "results/tables/seed_noise.csv",
        "results/figures/training_curves.png",
        "results/figures/main_f1.png",
    ]
    final_output += get_prefetch_output()
    final_output.append("results/results.md")
    if config["sweeps"]["run"]:
        final_output += get_sweep_output()
    return final_output


KERNEL_DIR = Path(workflow.basedir) / "workflow" / "kernels"


def get_kernel_sources():
    """The C sources and headers of the graph kernels and the tracer runtime."""
    return sorted(str(path) for path in KERNEL_DIR.glob("*.[ch]"))


def get_lr_factors():
    """The learning-rate grid every trained method chooses from on the first seed, as factors
    of its phase's rate."""
    return config["train"]["lr_grid"]["lr_factor"]


def format_factor(factor):
    return f"{float(factor):g}"


def get_lr_factor(wildcards):
    return float(wildcards.factor)


def get_chosen_selection(wildcards):
    """The selection of the first seed, whose choice a later seed's teacher replicates."""
    return (
        f"results/teachers/seed{SELECTION_SEED}/{wildcards.app}/{wildcards.arch}/"
        "selection.json"
    )


def get_teacher_candidates(wildcards):
    return [
        f"results/teachers/seed{wildcards.seed}/{wildcards.app}/{wildcards.arch}/grid/"
        f"lr{format_factor(factor)}.pt"
        for factor in get_lr_factors()
    ]


def get_whole_app_teacher_to_warm_start(wildcards):
    """The whole-app teacher a cluster teacher starts from (train.cluster_teachers.init)."""
    if config["train"]["cluster_teachers"]["init"] != "warm_start":
        return {}
    return {
        "whole_app": (
            f"results/teachers/seed{wildcards.seed}/{wildcards.app}/{wildcards.arch}/all.pt"
        )
    }


def get_student_lr_factors(wildcards):
    """The grid of a method: the shared grid, or one factor for a method with nothing to
    tune."""
    return get_lr_factors() if method_of(wildcards.method).tuned else [1.0]


def get_student_candidates(wildcards):
    return [
        f"results/students/seed{wildcards.seed}/{wildcards.app}/{wildcards.arch}/grid/"
        f"{wildcards.method}/lr{format_factor(factor)}.pt"
        for factor in get_student_lr_factors(wildcards)
    ]


def get_chosen_student_selection(wildcards):
    """The first seed's choice of a method's learning rate, which later seeds train at."""
    return (
        f"results/students/seed{SELECTION_SEED}/{wildcards.app}/{wildcards.arch}/"
        f"{wildcards.method}.selection.json"
    )


def get_teacher_size(wildcards):
    return config["models"][wildcards.arch]["teacher"]


def get_model_sizes(wildcards):
    """Teacher and student sizes of the arch: students, baselines and hashed models use both."""
    return config["models"][wildcards.arch]


def get_method_settings_of_job(wildcards):
    return get_method_settings(wildcards.method)


# Blockwise distillation (workflow/rules/blockwise.smk)
BLOCKWISE = config["blockwise"]
BLOCKWISE_METHODS = names_in_folder("blockwise")


def get_replacement_size(wildcards):
    return replacement_size_of(BLOCKWISE, wildcards.arch)


def get_layers_per_block(wildcards):
    return BLOCKWISE["layers_per_block"][wildcards.arch]


def get_block_checkpoints(wildcards):
    """One trained replacement per block of the app's whole-app teacher."""
    blocks = block_count(
        wildcards.arch,
        config["models"][wildcards.arch]["teacher"],
        BLOCKWISE["layers_per_block"][wildcards.arch],
    )
    return expand(
        "results/blockwise/seed{seed}/{app}/{arch}/block{block}.pt",
        seed=wildcards.seed,
        app=wildcards.app,
        arch=wildcards.arch,
        block=range(blocks),
    )


def get_block_priority(wildcards):
    """The costliest block jobs start first, so unequal blocks (ResNet stages) share the cores
    evenly."""
    priorities = block_priorities(
        wildcards.arch,
        config["models"][wildcards.arch]["teacher"],
        BLOCKWISE["layers_per_block"][wildcards.arch],
    )
    return priorities[int(wildcards.block)]


def get_blockwise_inputs(wildcards):
    """A student's inputs (data, and cluster teachers and clusters for PaCKD's soft targets),
    the teacher that was cut and its trained replacement blocks."""
    inputs = get_student_inputs(wildcards)
    inputs["cut_teacher"] = (
        f"results/teachers/seed{wildcards.seed}/{wildcards.app}/{wildcards.arch}/all.pt"
    )
    inputs["blocks"] = get_block_checkpoints(wildcards)
    return inputs


def get_block_runtime(wildcards, attempt):
    """Minutes for one block job (generous: 2 min per epoch)."""
    return (10 + 2 * BLOCKWISE["block"]["epochs"]) * attempt


def get_sequential_runtime(wildcards, attempt):
    """Minutes for all blocks of one teacher, one after another."""
    return get_block_runtime(wildcards, attempt) * len(get_block_checkpoints(wildcards))


def get_fine_tune_runtime(wildcards, attempt):
    """Minutes to fine-tune one assembled student (generous: 2 min per epoch)."""
    epochs = BLOCKWISE["fine_tune"]["epochs"] or config["train"]["student"]["epochs"]
    return (10 + 2 * epochs) * attempt


def get_blockwise_sequential_output():
    """The sequential baseline's blocks of every seed, app and arch (target blockwise_sequential)."""
    return expand(
        "results/blockwise/seed{seed}/{app}/{arch}/sequential",
        seed=SEEDS,
        app=APPS,
        arch=ARCHS,
    )


# Prefetch evaluation (workflow/rules/prefetch.smk)
PREFETCH_DISTANCE = DEFAULT_DISTANCE


def get_prefetch_degree():
    """Prefetches per load, as in the ML Prefetching Competition."""
    return config["evaluate"]["prefetch_degree"]


def get_prefetch_max_accesses():
    """The first test-range accesses replayed per app: bounds the scoring and replay time."""
    return config["evaluate"]["prefetch_max_accesses"]


def get_prefetch_keys():
    """ "arch/model" for every evaluated model, then "classic/prefetcher"."""
    return [
        *(f"{arch}/{model}" for arch in ARCHS for model in EVALUATED_MODELS),
        *(f"classic/{name}" for name in CLASSIC_PREFETCHERS),
    ]


def get_prefetch_app_files(suffix):
    return [
        f"results/prefetch/seed{{seed}}/{{app}}/{key}{suffix}"
        for key in get_prefetch_keys()
    ]


def get_prefetch_app_inputs(wildcards):
    """The trace, the cluster rule's centroids (to route the cluster teachers), and each
    model's checkpoints and metrics (its validation threshold)."""
    features, k = config["cluster"]["features"], config["cluster"]["k"]
    inputs = {
        "trace": f"results/traces/{wildcards.app}.parquet",
        "centroids": get_default_centroids(wildcards),
    }
    for arch in ARCHS:
        for model in EVALUATED_MODELS:
            inputs[f"checkpoints_{arch}__{model}"] = checkpoint_paths(
                model, wildcards.seed, wildcards.app, arch, features, k
            )
            inputs[f"metrics_{arch}__{model}"] = (
                f"results/metrics/seed{wildcards.seed}/{wildcards.app}/{arch}/{model}.json"
            )
    return inputs


def get_prefetch_reports():
    """The replay JSON of every model and classic prefetcher, every seed and app."""
    return expand(
        "results/prefetch/seed{seed}/{app}/{key}.json",
        seed=SEEDS,
        app=APPS,
        key=get_prefetch_keys(),
    )


def get_prefetch_output():
    """The prefetch table (CSV and Markdown) and figure."""
    return [
        "results/tables/prefetch.csv",
        "results/tables/prefetch.md",
        "results/figures/prefetch.png",
    ]


# The F1-versus-memory frontier (target `frontier`)
def get_frontier_variants():
    """Every model of the frontier: each method at each budget factor, the teacher (the
    ceiling) and the blockwise students (at their own size, factor 1)."""
    frontier = config["frontier"]
    models = [
        BudgetVariant(method, factor)
        for method in frontier["methods"]
        for factor in frontier["budgets"]
    ]
    # The ceiling and the methods that cannot reach the student's budget, at their own size,
    # beside a no-KD student of that size
    return models + [
        BudgetVariant("teacher", 1.0),
        *(BudgetVariant(method, 1.0) for method in BLOCKWISE_METHODS),
        BudgetVariant("no_kd", BLOCKWISE_SIZE),
    ]


def get_frontier_models():
    return [variant.name for variant in get_frontier_variants()]


def get_frontier_metrics():
    return expand(
        "results/metrics/seed{seed}/{app}/{arch}/{model}.json",
        seed=SEEDS,
        app=APPS,
        arch=ARCHS,
        model=get_frontier_models(),
    )
