"""The graphkernels program: its kernels' answers against networkx/scipy, and its graphs."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import networkx as nx
import numpy as np
import pytest
import scipy.sparse as sp

from packd.tracing import compile_kernel
from tests.kernel_runs import kernel_answer, kernel_graph, kernel_info

KERNEL_DIR = Path(__file__).resolve().parents[2] / "workflow" / "kernels"
SCALE = 9
DEGREE = 8
SEED = 7

pytestmark = pytest.mark.skipif(
    shutil.which("clang") is None, reason="clang is not installed (needed to build graphkernels)"
)


@pytest.fixture(scope="session")
def plain_binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The uninstrumented graphkernels, built once per session."""
    out = tmp_path_factory.mktemp("kernels") / "graphkernels"
    compile_kernel(KERNEL_DIR, out, instrumented=False)
    return out


def nx_graph(binary: Path, graph: str, scale: int = SCALE, seed: int = SEED) -> nx.Graph:
    """The program's graph rebuilt in networkx, isolated vertices included."""
    src, dst, w = kernel_graph(binary, graph, scale, DEGREE, seed)
    G = nx.Graph()
    G.add_nodes_from(range(2**scale))
    G.add_weighted_edges_from(zip(src.tolist(), dst.tolist(), w.tolist(), strict=True))
    return G


def sources_of(binary: Path, kernel: str, graph: str, extra: tuple[str, ...] = ()) -> list[int]:
    """The source vertices the program picked (it reports them on stderr)."""
    info = kernel_info(binary, kernel, graph, SCALE, DEGREE, SEED, extra_args=extra)
    return [int(s) for s in info["sources"].split(",")]


GRAPHS = ["kron", "uniform"]


@pytest.mark.parametrize("graph", GRAPHS)
def test_bfs_depths(plain_binary: Path, graph: str) -> None:
    G = nx_graph(plain_binary, graph)
    (src,) = sources_of(plain_binary, "bfs", graph)
    got = kernel_answer(plain_binary, "bfs", graph, SCALE, DEGREE, SEED)
    want = np.full(G.number_of_nodes(), -1, dtype=np.int64)
    for v, d in nx.single_source_shortest_path_length(G, src).items():
        want[v] = d
    assert G.degree[src] > 0
    np.testing.assert_array_equal(got, want)
    # The BFS must reach beyond the source, or the test proves little.
    assert (got > 1).sum() > 10


def pagerank_like_program(G: nx.Graph, d: float = 0.85, iters: int = 20, tol: float = 1e-4):
    """Same iteration as the program: Jacobi pull, dangling mass spread uniformly, L1 stop."""
    n = G.number_of_nodes()
    A = nx.to_scipy_sparse_array(G, nodelist=range(n), weight=None, format="csr")
    deg = np.asarray(A.sum(axis=1)).ravel()
    x = np.full(n, 1.0 / n)
    for _ in range(iters):
        contrib = np.divide(x, deg, out=np.zeros(n), where=deg > 0)
        dangling = x[deg == 0].sum()
        new = (1 - d) / n + d * dangling / n + d * (A @ contrib)
        err = np.abs(new - x).sum()
        x = new
        if err < tol:
            break
    return x


@pytest.mark.parametrize("graph", GRAPHS)
def test_pagerank(plain_binary: Path, graph: str) -> None:
    G = nx_graph(plain_binary, graph)
    got = kernel_answer(plain_binary, "pr", graph, SCALE, DEGREE, SEED)
    assert got.shape == (G.number_of_nodes(),)
    assert got.sum() == pytest.approx(1.0, abs=1e-9)
    # Same algorithm and stopping rule: equal to rounding.
    np.testing.assert_allclose(got, pagerank_like_program(G), rtol=1e-9, atol=0)
    # Converged networkx PageRank (same damping and dangling handling): the program stops at an
    # L1 change < 1e-4, so its L1 distance to the fixed point is below 1e-4 * d / (1 - d).
    ref = nx.pagerank(G, alpha=0.85, tol=1e-12, max_iter=1000, weight=None)
    ref_arr = np.array([ref[v] for v in range(G.number_of_nodes())])
    assert np.abs(got - ref_arr).sum() < 1e-4 * 0.85 / 0.15
    assert np.argmax(got) == np.argmax(ref_arr)


@pytest.mark.parametrize("graph", GRAPHS)
def test_connected_components(plain_binary: Path, graph: str) -> None:
    G = nx_graph(plain_binary, graph)
    got = kernel_answer(plain_binary, "cc", graph, SCALE, DEGREE, SEED)
    comps = list(nx.connected_components(G))
    for comp in comps:
        labels = {int(got[v]) for v in comp}
        assert len(labels) == 1
        # Shiloach-Vishkin hooks high roots onto low ones: the label is the smallest member.
        assert labels == {min(comp)}
    assert len(np.unique(got)) == len(comps)
    # scipy agrees on the number of components (independent of networkx).
    A = nx.to_scipy_sparse_array(G, nodelist=range(G.number_of_nodes()), format="csr")
    ncomp, _ = sp.csgraph.connected_components(A, directed=False)
    assert ncomp == len(comps)


@pytest.mark.parametrize("graph", GRAPHS)
@pytest.mark.parametrize("nsources", [1, 3])
def test_betweenness(plain_binary: Path, graph: str, nsources: int) -> None:
    G = nx_graph(plain_binary, graph)
    extra = ("--sources", str(nsources))
    sources = sources_of(plain_binary, "bc", graph, extra)
    assert len(sources) == nsources
    got = kernel_answer(plain_binary, "bc", graph, SCALE, DEGREE, SEED, extra_args=extra)
    # The program sums Brandes dependencies delta_s(v) over its sources, for all targets,
    # unnormalized. networkx halves undirected subset betweenness (unordered pairs), so the
    # reference uses the equivalent directed graph, where no rescaling happens.
    ref = nx.betweenness_centrality_subset(
        G.to_directed(), sources=sources, targets=list(G.nodes), normalized=False
    )
    ref_arr = np.array([ref[v] for v in range(G.number_of_nodes())])
    np.testing.assert_allclose(got, ref_arr, rtol=1e-9, atol=1e-9)
    assert got.max() > 1.0


@pytest.mark.parametrize("graph", GRAPHS)
@pytest.mark.parametrize("delta", [1, 16, 1000])
def test_sssp(plain_binary: Path, graph: str, delta: int) -> None:
    G = nx_graph(plain_binary, graph)
    (src,) = sources_of(plain_binary, "sssp", graph)
    extra = ("--delta", str(delta))
    got = kernel_answer(plain_binary, "sssp", graph, SCALE, DEGREE, SEED, extra_args=extra)
    want = np.full(G.number_of_nodes(), -1, dtype=np.int64)
    for v, d in nx.single_source_dijkstra_path_length(G, src, weight="weight").items():
        want[v] = d
    np.testing.assert_array_equal(got, want)
    assert got.max() > 255  # multi-hop paths exist, so weights matter


def test_weights_in_range(plain_binary: Path) -> None:
    src, dst, w = kernel_graph(plain_binary, "kron", SCALE, DEGREE, SEED)
    assert w.min() >= 1 and w.max() <= 255
    assert len(np.unique(w)) > 200  # actually spread over 1..255
    assert (src < dst).all()  # no self-loops, one line per undirected edge
    keys = src * 2**SCALE + dst
    assert len(np.unique(keys)) == len(keys)  # no duplicates


def degree_stats(binary: Path, graph: str, seed: int) -> tuple[float, float, float]:
    """(max/mean degree, share of edge endpoints at the top 1% vertices, isolated share)."""
    scale = 12
    src, dst, _ = kernel_graph(binary, graph, scale, 16, seed)
    n = 2**scale
    deg = np.bincount(src, minlength=n) + np.bincount(dst, minlength=n)
    top = np.sort(deg)[::-1][: n // 100].sum() / deg.sum()
    return deg.max() / deg.mean(), top, float((deg == 0).mean())


def test_rmat_degree_skew(plain_binary: Path) -> None:
    k_ratio, k_top, k_iso = degree_stats(plain_binary, "kron", SEED)
    u_ratio, u_top, u_iso = degree_stats(plain_binary, "uniform", SEED)
    # Uniform random graphs are Poisson-like: max degree ~2x the mean, the top 1% of vertices
    # hold ~2-3% of the endpoints. RMAT is heavy-tailed: hubs and many isolated vertices.
    assert u_ratio < 4
    assert k_ratio > 8 * u_ratio
    assert k_top > 0.15 and u_top < 0.05
    assert k_iso > 0.1 and u_iso < 0.01


def test_graph_determinism(plain_binary: Path) -> None:
    a = kernel_graph(plain_binary, "kron", SCALE, DEGREE, SEED)
    b = kernel_graph(plain_binary, "kron", SCALE, DEGREE, SEED)
    c = kernel_graph(plain_binary, "kron", SCALE, DEGREE, SEED + 1)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    assert (
        len(a[0]) != len(c[0]) or not np.array_equal(a[0], c[0]) or not np.array_equal(a[1], c[1])
    )
    u1 = kernel_graph(plain_binary, "uniform", SCALE, DEGREE, SEED)
    u2 = kernel_graph(plain_binary, "uniform", SCALE, DEGREE, SEED + 1)
    assert not (len(u1[0]) == len(u2[0]) and np.array_equal(u1[0], u2[0]))


def test_answers_deterministic(plain_binary: Path) -> None:
    for kernel in ("bfs", "pr", "bc"):
        a = kernel_answer(plain_binary, kernel, "kron", SCALE, DEGREE, SEED)
        b = kernel_answer(plain_binary, kernel, "kron", SCALE, DEGREE, SEED)
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["--kernel", "dfs", "--graph", "kron", "--scale", "4", "--degree", "4", "--seed", "1"],
        ["--kernel", "bfs", "--graph", "grid", "--scale", "4", "--degree", "4", "--seed", "1"],
        ["--kernel", "bfs", "--graph", "kron", "--scale", "0", "--degree", "4", "--seed", "1"],
        ["--kernel", "bfs", "--graph", "kron", "--scale", "x", "--degree", "4", "--seed", "1"],
        ["--kernel", "bfs", "--graph", "kron", "--scale", "4", "--degree", "4"],
        ["--kernel", "bfs", "--graph", "kron", "--scale", "4", "--degree", "4", "--seed", "-1"],
        [
            "--kernel",
            "bfs",
            "--graph",
            "kron",
            "--scale",
            "4",
            "--degree",
            "4",
            "--seed",
            "1",
            "-v",
        ],
    ],
)
def test_bad_args_exit_2(plain_binary: Path, args: list[str]) -> None:
    proc = subprocess.run([str(plain_binary), *args], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "usage:" in proc.stderr
    assert proc.stdout == ""
