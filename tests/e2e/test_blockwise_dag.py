"""Blockwise distillation in the workflow: block jobs are independent in Snakemake's own DAG, and
the assembled student of a real tiny run loads from its checkpoint."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import networkx as nx
import pytest
import yaml

from packd.config import validate_config
from packd.methods import names_in_folder
from packd.models import count_parameters
from packd.networks import model_from_checkpoint
from packd.plan import block_count
from tests.conftest import SCHEMA, copy_workflow, run_snakemake

pytestmark = pytest.mark.e2e

CONFIG = "tests/configs/tiny.yaml"
DOT_NODE = re.compile(r'^\s*(\d+)\[label = "([^"\\]+)')
DOT_EDGE = re.compile(r"^\s*(\d+) -> (\d+)")


def job_graph(dot: str) -> nx.DiGraph:
    """Snakemake's --dag output: job ids with their rule, edges pointing downstream."""
    graph = nx.DiGraph()
    for line in dot.splitlines():
        if node := DOT_NODE.match(line):
            graph.add_node(int(node[1]), rule=node[2])
        elif edge := DOT_EDGE.match(line):
            graph.add_edge(int(edge[1]), int(edge[2]))
    return graph


def jobs_of(graph: nx.DiGraph, rule: str) -> list[int]:
    return [job for job, data in graph.nodes(data=True) if data["rule"] == rule]


def upstream_rules(graph: nx.DiGraph, job: int) -> Counter:
    return Counter(graph.nodes[parent]["rule"] for parent in graph.predecessors(job))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_workflow(tmp_path_factory.mktemp("blockwise-dag"))


@pytest.fixture(scope="module")
def dag(workdir: Path) -> nx.DiGraph:
    completed = run_snakemake(workdir, "-n", "--forceall", "--dag", "--configfile", CONFIG)
    graph = job_graph(completed.stdout)
    assert jobs_of(graph, "distill_block"), "no block job in the DAG"
    return graph


def test_block_jobs_need_only_the_teacher_and_its_activations(dag: nx.DiGraph) -> None:
    for job in jobs_of(dag, "distill_block"):
        rules = upstream_rules(dag, job)
        # The first seed's teacher is selected from the grid; a later seed's replicates it
        teacher = rules["select_teacher"] + rules["replicate_teacher"]
        assert rules["teacher_block_activations"] == 1 and teacher == 1 and rules.total() == 2
        (activations,) = [
            p for p in dag.predecessors(job) if p in jobs_of(dag, "teacher_block_activations")
        ]
        # The activations come from the same teacher the block job reads.
        assert set(dag.predecessors(activations)) & set(dag.predecessors(job))


def test_later_seeds_train_their_teacher_at_the_first_seeds_choice(
    workdir: Path, dag: nx.DiGraph
) -> None:
    seeds = yaml.safe_load((workdir / CONFIG).read_text())["seeds"]
    replicates, selections = jobs_of(dag, "replicate_teacher"), jobs_of(dag, "select_teacher")
    # One selection per (app, arch) on the first seed, one replicate per later seed
    assert len(replicates) == (len(seeds) - 1) * len(selections) > 0
    for job in replicates:
        assert upstream_rules(dag, job)["select_teacher"] == 1
        assert upstream_rules(dag, job)["train_teacher_candidate"] == 0
    candidates = jobs_of(dag, "train_teacher_candidate")
    assert len(candidates) == len(selections) * 2  # tiny's grid: lr x1 and x2, first seed only


def test_no_block_job_is_upstream_of_another(dag: nx.DiGraph) -> None:
    blocks = set(jobs_of(dag, "distill_block"))
    for job in blocks:
        assert not nx.ancestors(dag, job) & blocks
        assert not nx.descendants(dag, job) & blocks


def test_each_student_assembles_all_blocks_of_one_teacher(workdir: Path, dag: nx.DiGraph) -> None:
    config = yaml.safe_load((workdir / CONFIG).read_text())
    validate_config(config, SCHEMA, workdir)  # as the rules see it: the schema's defaults filled
    settings = config["blockwise"]
    methods = [name for name in names_in_folder("blockwise") if name in config["methods"]]
    expected = Counter(
        block_count(arch, config["models"][arch]["teacher"], settings["layers_per_block"][arch])
        for _ in config["seeds"]
        for _ in config["apps"]
        for arch in config["archs"]
        for _ in methods
    )
    assembled = Counter()
    for job in jobs_of(dag, "assemble_blockwise"):
        blocks = [p for p in dag.predecessors(job) if dag.nodes[p]["rule"] == "distill_block"]
        activations = {
            parent
            for block in blocks
            for parent in dag.predecessors(block)
            if dag.nodes[parent]["rule"] == "teacher_block_activations"
        }
        assert len(activations) == 1, "a student mixes blocks of two teachers"
        assembled[len(blocks)] += 1
    assert assembled == expected
    assert max(assembled) >= 2, "no arch is cut into two blocks or more: nothing runs in parallel"
    # Blocks are shared: every method of an (app, arch) assembles the same block jobs.
    assert len(jobs_of(dag, "distill_block")) * len(methods) == sum(
        count * blocks for blocks, count in assembled.items()
    )


def test_sequential_baseline_is_not_in_the_default_target(dag: nx.DiGraph) -> None:
    assert not jobs_of(dag, "distill_blocks_sequentially")


def test_assembled_student_loads_from_its_checkpoint(workdir: Path) -> None:
    config = yaml.safe_load((workdir / CONFIG).read_text())
    seed = (config.get("seeds") or [config["seed"]])[0]
    target = f"results/blockwise/seed{seed}/dpc/resnet/blockwise_packd.pt"
    run_snakemake(workdir, target, "--cores", "2", "--configfile", CONFIG)
    student, header = model_from_checkpoint(workdir / target)
    assert header["builder"] == "blockwise" and header["method"] == "blockwise_packd"
    teacher, _ = model_from_checkpoint(workdir / f"results/teachers/seed{seed}/dpc/resnet/all.pt")
    assert header["params"] == count_parameters(student) < count_parameters(teacher)
    assert (workdir / f"logs/blockwise/seed{seed}/dpc/resnet/block1.log").read_text()
