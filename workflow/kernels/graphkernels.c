/*
 * graphkernels: GAP-benchmark-like graph kernels on generated graphs, for memory tracing.
 *
 *   graphkernels --kernel bfs|pr|cc|bc|sssp --graph kron|uniform --scale S --degree D --seed N
 *                [--sources K] [--delta W] [--trials T] [--answer FILE] [--dump-graph FILE]
 *
 * Graph: 2^S vertices, D*2^S/2 generated undirected edges (Kronecker/RMAT a=.57 b=.19 c=.19
 * d=.05 with a seeded vertex permutation, or uniform random), self-loops and duplicates removed
 * (a duplicate keeps its smallest weight), symmetrized, CSR with sorted neighbour lists.
 * Integer weights 1..255 come from the seed. Everything is deterministic given the seed
 * (own splitmix64 PRNG).
 *
 * Only the kernel runs between roi_begin() and roi_end() (defined by the tracer runtime or the
 * no-op runtime). stderr gets "key=value" lines: n, m, sources, roi_seconds.
 *
 * --answer: one line per vertex: bfs depth or -1 / pr score / cc label / bc score (Brandes
 *   dependencies summed over the sources, unnormalized, ordered pairs) / sssp distance or -1.
 * --dump-graph: "n m" then one "u v w" line per undirected edge (u < v).
 * Without --kernel, --dump-graph alone just writes the graph.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void roi_begin(void);
void roi_end(void);

/* ------------------------------------------------------------------ PRNG */

static inline uint64_t splitmix64(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static inline double rand_unit(uint64_t *s) { return (double)(splitmix64(s) >> 11) * 0x1.0p-53; }

static inline uint64_t rand_below(uint64_t *s, uint64_t n) {
    /* Multiply-shift: unbiased enough for n << 2^64, and no modulo. */
    return (uint64_t)(((unsigned __int128)splitmix64(s) * n) >> 64);
}

/* Independent streams for the graph's parts, so changing one does not shift another. */
#define STREAM_EDGES 0x0ULL
#define STREAM_PERM 0x1234567ULL
#define STREAM_WEIGHTS 0x5EED5EEDULL
#define STREAM_SOURCES 0xA5A5A5A5ULL

static uint64_t stream_state(uint64_t seed, uint64_t stream) {
    uint64_t s = seed ^ (stream * 0xD1B54A32D192ED03ULL);
    splitmix64(&s);
    return s;
}

/* ------------------------------------------------------------------ utilities */

static void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "graphkernels: out of memory (%zu bytes)\n", n);
        exit(1);
    }
    return p;
}

static void *xcalloc(size_t n, size_t sz) {
    void *p = calloc(n ? n : 1, sz);
    if (!p) {
        fprintf(stderr, "graphkernels: out of memory\n");
        exit(1);
    }
    return p;
}

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ------------------------------------------------------------------ graph */

typedef struct {
    int32_t v;
    int32_t w;
} wnode_t; /* GAP's NodeWeight: neighbour and weight interleaved */

typedef struct {
    int64_t n;
    int64_t m;       /* undirected edges after cleaning */
    int64_t *off;    /* n + 1 */
    int32_t *nbr;    /* 2m, sorted per vertex */
    wnode_t *wnbr;   /* 2m, same order as nbr */
    uint64_t *edges; /* m cleaned undirected edges, packed (u << 36) | (v << 8) | w, u < v */
} graph_t;

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

#define EDGE_U(e) ((int64_t)((e) >> 36))
#define EDGE_V(e) ((int64_t)(((e) >> 8) & 0xFFFFFFFULL))
#define EDGE_W(e) ((int32_t)((e)&0xFFULL))

static graph_t build_graph(int kron, int scale, int degree, uint64_t seed) {
    graph_t g;
    int64_t n = (int64_t)1 << scale;
    int64_t gen = (int64_t)degree * n / 2;
    uint64_t se = stream_state(seed, STREAM_EDGES);
    uint64_t sw = stream_state(seed, STREAM_WEIGHTS);
    int64_t *perm = NULL;
    if (kron) {
        /* Seeded permutation so that high-degree vertices are not clustered at low ids. */
        uint64_t sp = stream_state(seed, STREAM_PERM);
        perm = (int64_t *)xmalloc((size_t)n * sizeof(int64_t));
        for (int64_t i = 0; i < n; i++) perm[i] = i;
        for (int64_t i = n - 1; i > 0; i--) {
            int64_t j = (int64_t)rand_below(&sp, (uint64_t)i + 1);
            int64_t t = perm[i];
            perm[i] = perm[j];
            perm[j] = t;
        }
    }
    uint64_t *keys = (uint64_t *)xmalloc((size_t)(gen ? gen : 1) * sizeof(uint64_t));
    int64_t k = 0;
    const double A = 0.57, B = 0.19, C = 0.19;
    for (int64_t e = 0; e < gen; e++) {
        int64_t u, v;
        if (kron) {
            u = 0;
            v = 0;
            for (int lvl = 0; lvl < scale; lvl++) {
                double r = rand_unit(&se);
                u <<= 1;
                v <<= 1;
                if (r < A) {
                } else if (r < A + B) {
                    v |= 1;
                } else if (r < A + B + C) {
                    u |= 1;
                } else {
                    u |= 1;
                    v |= 1;
                }
            }
            u = perm[u];
            v = perm[v];
        } else {
            u = (int64_t)rand_below(&se, (uint64_t)n);
            v = (int64_t)rand_below(&se, (uint64_t)n);
        }
        /* The weight is drawn for every generated edge, so weights do not depend on cleaning. */
        uint64_t w = 1 + rand_below(&sw, 255);
        if (u == v) continue;
        if (u > v) {
            int64_t t = u;
            u = v;
            v = t;
        }
        keys[k++] = ((uint64_t)u << 36) | ((uint64_t)v << 8) | w;
    }
    free(perm);
    qsort(keys, (size_t)k, sizeof(uint64_t), cmp_u64);
    /* Dedupe on (u, v): sorted, so the first of a run has the smallest weight. */
    int64_t m = 0;
    for (int64_t i = 0; i < k; i++) {
        if (m > 0 && (keys[m - 1] >> 8) == (keys[i] >> 8)) continue;
        keys[m++] = keys[i];
    }
    g.n = n;
    g.m = m;
    g.edges = keys;
    g.off = (int64_t *)xcalloc((size_t)n + 1, sizeof(int64_t));
    for (int64_t i = 0; i < m; i++) {
        g.off[EDGE_U(keys[i]) + 1]++;
        g.off[EDGE_V(keys[i]) + 1]++;
    }
    for (int64_t i = 0; i < n; i++) g.off[i + 1] += g.off[i];
    int64_t *pos = (int64_t *)xmalloc((size_t)n * sizeof(int64_t));
    memcpy(pos, g.off, (size_t)n * sizeof(int64_t));
    g.nbr = (int32_t *)xmalloc((size_t)(2 * m) * sizeof(int32_t));
    g.wnbr = (wnode_t *)xmalloc((size_t)(2 * m) * sizeof(wnode_t));
    /* Edges sorted by (u, v): row x receives its smaller neighbours (as v) first, in increasing
     * order, then its larger ones (as u), also increasing, so every row ends up sorted. */
    for (int64_t i = 0; i < m; i++) {
        int64_t u = EDGE_U(keys[i]), v = EDGE_V(keys[i]);
        int32_t w = EDGE_W(keys[i]);
        int64_t pu = pos[u]++, pv = pos[v]++;
        g.nbr[pu] = (int32_t)v;
        g.nbr[pv] = (int32_t)u;
        g.wnbr[pu].v = (int32_t)v;
        g.wnbr[pu].w = w;
        g.wnbr[pv].v = (int32_t)u;
        g.wnbr[pv].w = w;
    }
    free(pos);
    return g;
}

static inline int64_t out_degree(const graph_t *g, int64_t u) { return g->off[u + 1] - g->off[u]; }

/* Sources: a seeded random vertex, moved forward to the first one with a nonzero degree. */
static int64_t *pick_sources(const graph_t *g, uint64_t seed, int k) {
    uint64_t s = stream_state(seed, STREAM_SOURCES);
    int64_t *src = (int64_t *)xmalloc((size_t)k * sizeof(int64_t));
    for (int i = 0; i < k; i++) {
        int64_t v = (int64_t)rand_below(&s, (uint64_t)g->n);
        int64_t tries = 0;
        while (out_degree(g, v) == 0 && tries < g->n) {
            v = (v + 1) % g->n;
            tries++;
        }
        src[i] = v;
    }
    return src;
}

/* ------------------------------------------------------------------ kernels */

/* Direction-optimizing BFS (Beamer; GAP's bfs.cc) recording depths. */
static int64_t bfs_top_down(const graph_t *g, int32_t *depth, const int32_t *curr, int64_t ncurr,
                            int32_t *next, int64_t *nnext, int32_t level) {
    int64_t scout = 0, t = 0;
    for (int64_t i = 0; i < ncurr; i++) {
        int32_t u = curr[i];
        for (int64_t e = g->off[u]; e < g->off[u + 1]; e++) {
            int32_t v = g->nbr[e];
            if (depth[v] < 0) {
                depth[v] = level + 1;
                next[t++] = v;
                scout += out_degree(g, v);
            }
        }
    }
    *nnext = t;
    return scout;
}

static int64_t bfs_bottom_up(const graph_t *g, int32_t *depth, const uint64_t *front,
                             uint64_t *next, int32_t level) {
    int64_t awake = 0;
    memset(next, 0, (size_t)((g->n + 63) / 64) * sizeof(uint64_t));
    for (int64_t u = 0; u < g->n; u++) {
        if (depth[u] >= 0) continue;
        for (int64_t e = g->off[u]; e < g->off[u + 1]; e++) {
            int32_t v = g->nbr[e];
            if (front[v >> 6] & (1ULL << (v & 63))) {
                depth[u] = level + 1;
                next[u >> 6] |= 1ULL << (u & 63);
                awake++;
                break;
            }
        }
    }
    return awake;
}

/* noinline: the trials loop must not absorb kernels into main (tests map PCs to functions) */
__attribute__((noinline)) static int32_t *kernel_bfs(const graph_t *g, int64_t source) {
    const int alpha = 15, beta = 18;
    int64_t n = g->n;
    int32_t *depth = (int32_t *)xmalloc((size_t)n * sizeof(int32_t));
    for (int64_t i = 0; i < n; i++) depth[i] = -1;
    int32_t *curr = (int32_t *)xmalloc((size_t)n * sizeof(int32_t));
    int32_t *next = (int32_t *)xmalloc((size_t)n * sizeof(int32_t));
    int64_t words = (n + 63) / 64;
    uint64_t *front = (uint64_t *)xcalloc((size_t)words, sizeof(uint64_t));
    uint64_t *nextb = (uint64_t *)xcalloc((size_t)words, sizeof(uint64_t));
    depth[source] = 0;
    curr[0] = (int32_t)source;
    int64_t ncurr = 1;
    int32_t level = 0;
    int64_t edges_to_check = 2 * g->m;
    int64_t scout = out_degree(g, source);
    while (ncurr > 0) {
        if (scout > edges_to_check / alpha) {
            memset(front, 0, (size_t)words * sizeof(uint64_t));
            for (int64_t i = 0; i < ncurr; i++) front[curr[i] >> 6] |= 1ULL << (curr[i] & 63);
            int64_t awake = ncurr, old_awake;
            do {
                old_awake = awake;
                awake = bfs_bottom_up(g, depth, front, nextb, level);
                level++;
                uint64_t *t = front;
                front = nextb;
                nextb = t;
            } while (awake >= old_awake || awake > n / beta);
            ncurr = 0;
            for (int64_t u = 0; u < n; u++)
                if (front[u >> 6] & (1ULL << (u & 63))) curr[ncurr++] = (int32_t)u;
            scout = 1;
        } else {
            int64_t nnext;
            edges_to_check -= scout;
            scout = bfs_top_down(g, depth, curr, ncurr, next, &nnext, level);
            level++;
            int32_t *t = curr;
            curr = next;
            next = t;
            ncurr = nnext;
        }
    }
    free(curr);
    free(next);
    free(front);
    free(nextb);
    return depth;
}

/* Pull-direction PageRank (GAP's pr.cc), plus uniform redistribution of dangling (isolated)
 * vertices' rank so that it is the usual (networkx) PageRank. */
__attribute__((noinline)) static double *kernel_pr(const graph_t *g, int max_iters, double tol) {
    const double d = 0.85;
    int64_t n = g->n;
    double init = 1.0 / (double)n, base = (1.0 - d) / (double)n;
    double *scores = (double *)xmalloc((size_t)n * sizeof(double));
    double *contrib = (double *)xmalloc((size_t)n * sizeof(double));
    for (int64_t i = 0; i < n; i++) scores[i] = init;
    for (int it = 0; it < max_iters; it++) {
        double dangling = 0.0;
        for (int64_t u = 0; u < n; u++) {
            int64_t deg = out_degree(g, u);
            if (deg > 0) {
                contrib[u] = scores[u] / (double)deg;
            } else {
                contrib[u] = 0.0;
                dangling += scores[u];
            }
        }
        double add = base + d * dangling / (double)n;
        double err = 0.0;
        for (int64_t u = 0; u < n; u++) {
            double sum = 0.0;
            for (int64_t e = g->off[u]; e < g->off[u + 1]; e++) sum += contrib[g->nbr[e]];
            double s = add + d * sum;
            err += fabs(s - scores[u]);
            scores[u] = s;
        }
        if (err < tol) break;
    }
    free(contrib);
    return scores;
}

/* Shiloach-Vishkin connected components (GAP's cc_sv.cc): hook roots high -> low, then
 * compress; labels end up as each component's smallest vertex. */
__attribute__((noinline)) static int32_t *kernel_cc(const graph_t *g) {
    int64_t n = g->n;
    int32_t *comp = (int32_t *)xmalloc((size_t)n * sizeof(int32_t));
    for (int64_t i = 0; i < n; i++) comp[i] = (int32_t)i;
    int change = 1;
    while (change) {
        change = 0;
        for (int64_t u = 0; u < n; u++) {
            for (int64_t e = g->off[u]; e < g->off[u + 1]; e++) {
                int32_t v = g->nbr[e];
                int32_t cu = comp[u], cv = comp[v];
                if (cu == cv) continue;
                int32_t hi = cu > cv ? cu : cv, lo = cu > cv ? cv : cu;
                if (hi == comp[hi]) {
                    change = 1;
                    comp[hi] = lo;
                }
            }
        }
        for (int64_t u = 0; u < n; u++)
            while (comp[u] != comp[comp[u]]) comp[u] = comp[comp[u]];
    }
    return comp;
}

/* Brandes betweenness from the given sources: BFS with path counts, then dependencies
 * accumulated in reverse BFS order over successors (depth[v] == depth[w] + 1). */
__attribute__((noinline)) static double *kernel_bc(const graph_t *g, const int64_t *sources, int nsources) {
    int64_t n = g->n;
    double *bc = (double *)xcalloc((size_t)n, sizeof(double));
    double *sigma = (double *)xmalloc((size_t)n * sizeof(double));
    double *delta = (double *)xmalloc((size_t)n * sizeof(double));
    int32_t *depth = (int32_t *)xmalloc((size_t)n * sizeof(int32_t));
    int32_t *queue = (int32_t *)xmalloc((size_t)n * sizeof(int32_t));
    for (int k = 0; k < nsources; k++) {
        int64_t s = sources[k];
        for (int64_t i = 0; i < n; i++) {
            sigma[i] = 0.0;
            delta[i] = 0.0;
            depth[i] = -1;
        }
        depth[s] = 0;
        sigma[s] = 1.0;
        queue[0] = (int32_t)s;
        int64_t head = 0, tail = 1;
        while (head < tail) {
            int32_t u = queue[head++];
            int32_t du = depth[u] + 1;
            for (int64_t e = g->off[u]; e < g->off[u + 1]; e++) {
                int32_t v = g->nbr[e];
                if (depth[v] < 0) {
                    depth[v] = du;
                    queue[tail++] = v;
                }
                if (depth[v] == du) sigma[v] += sigma[u];
            }
        }
        for (int64_t i = tail - 1; i >= 0; i--) {
            int32_t w = queue[i];
            int32_t dw = depth[w] + 1;
            double acc = 0.0;
            for (int64_t e = g->off[w]; e < g->off[w + 1]; e++) {
                int32_t v = g->nbr[e];
                if (depth[v] == dw) acc += (1.0 + delta[v]) / sigma[v];
            }
            delta[w] = sigma[w] * acc;
            if (w != s) bc[w] += delta[w];
        }
    }
    free(sigma);
    free(delta);
    free(depth);
    free(queue);
    return bc;
}

/* Serial delta-stepping (GAP's sssp.cc without threads): bins of width delta, a vertex is
 * expanded when its bin is processed and its distance still belongs to that bin or below. */
typedef struct {
    int32_t *a;
    int64_t len, cap;
} vec_t;

static inline void vec_push(vec_t *v, int32_t x) {
    if (v->len == v->cap) {
        v->cap = v->cap ? 2 * v->cap : 64;
        v->a = (int32_t *)realloc(v->a, (size_t)v->cap * sizeof(int32_t));
        if (!v->a) {
            fprintf(stderr, "graphkernels: out of memory\n");
            exit(1);
        }
    }
    v->a[v->len++] = x;
}

__attribute__((noinline)) static int64_t *kernel_sssp(const graph_t *g, int64_t source, int64_t delta) {
    const int64_t INF = INT64_MAX;
    int64_t n = g->n;
    int64_t *dist = (int64_t *)xmalloc((size_t)n * sizeof(int64_t));
    for (int64_t i = 0; i < n; i++) dist[i] = INF;
    int64_t nbins = 64;
    vec_t *bins = (vec_t *)xcalloc((size_t)nbins, sizeof(vec_t));
    vec_t frontier = {0};
    dist[source] = 0;
    vec_push(&bins[0], (int32_t)source);
    int64_t max_bin = 0;
    for (int64_t b = 0; b <= max_bin; b++) {
        while (bins[b].len > 0) {
            vec_t t = frontier;
            frontier = bins[b];
            bins[b] = t;
            bins[b].len = 0;
            for (int64_t i = 0; i < frontier.len; i++) {
                int32_t u = frontier.a[i];
                int64_t du = dist[u];
                if (du / delta < b) continue; /* stale: already expanded from an earlier bin */
                for (int64_t e = g->off[u]; e < g->off[u + 1]; e++) {
                    wnode_t wn = g->wnbr[e];
                    int64_t nd = du + wn.w;
                    if (nd < dist[wn.v]) {
                        dist[wn.v] = nd;
                        int64_t nb = nd / delta;
                        if (nb >= nbins) {
                            int64_t nn = nbins;
                            while (nn <= nb) nn *= 2;
                            bins = (vec_t *)realloc(bins, (size_t)nn * sizeof(vec_t));
                            if (!bins) {
                                fprintf(stderr, "graphkernels: out of memory\n");
                                exit(1);
                            }
                            memset(bins + nbins, 0, (size_t)(nn - nbins) * sizeof(vec_t));
                            nbins = nn;
                        }
                        if (nb > max_bin) max_bin = nb;
                        vec_push(&bins[nb], wn.v);
                    }
                }
            }
        }
    }
    for (int64_t b = 0; b < nbins; b++) free(bins[b].a);
    free(bins);
    free(frontier.a);
    for (int64_t i = 0; i < n; i++)
        if (dist[i] == INF) dist[i] = -1;
    return dist;
}

/* ------------------------------------------------------------------ CLI */

static void usage(const char *msg) {
    if (msg) fprintf(stderr, "graphkernels: %s\n", msg);
    fprintf(stderr,
            "usage: graphkernels --kernel bfs|pr|cc|bc|sssp --graph kron|uniform --scale S "
            "--degree D --seed N\n"
            "                    [--sources K] [--delta W] [--trials T]\n"
            "                    [--answer FILE] [--dump-graph FILE]\n"
            "  S in 1..26, D in 1..1024, K (bc sources) in 1..64, W (sssp bin width) >= 1;\n"
            "  --kernel may be omitted when --dump-graph is given.\n");
    exit(2);
}

static long long parse_int(const char *s, const char *name, long long lo, long long hi) {
    char *end = NULL;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || !*s || *end || v < lo || v > hi) {
        char msg[256];
        snprintf(msg, sizeof msg, "bad value for %s: '%s'", name, s);
        usage(msg);
    }
    return v;
}

static FILE *open_out(const char *path) {
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "graphkernels: cannot write %s: %s\n", path, strerror(errno));
        exit(1);
    }
    return f;
}

static void close_out(FILE *f, const char *path) {
    if (ferror(f) || fclose(f) != 0) {
        fprintf(stderr, "graphkernels: error writing %s\n", path);
        exit(1);
    }
}

int main(int argc, char **argv) {
    const char *kernel = NULL, *graph = NULL, *answer = NULL, *dump = NULL;
    long long scale = -1, degree = -1, nsources = 1, delta = 16, trials = 1;
    unsigned long long seed = 0;
    int have_seed = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) usage(NULL);
        if (i + 1 >= argc) {
            char msg[256];
            snprintf(msg, sizeof msg, "missing value or unknown argument '%s'", a);
            usage(msg);
        }
        const char *v = argv[++i];
        if (!strcmp(a, "--kernel"))
            kernel = v;
        else if (!strcmp(a, "--graph"))
            graph = v;
        else if (!strcmp(a, "--scale"))
            scale = parse_int(v, a, 1, 26);
        else if (!strcmp(a, "--degree"))
            degree = parse_int(v, a, 1, 1024);
        else if (!strcmp(a, "--seed")) {
            char *end = NULL;
            errno = 0;
            seed = strtoull(v, &end, 10);
            if (errno || !*v || *end || v[0] == '-') usage("bad value for --seed");
            have_seed = 1;
        } else if (!strcmp(a, "--sources"))
            nsources = parse_int(v, a, 1, 64);
        else if (!strcmp(a, "--trials"))
            trials = parse_int(v, a, 1, 1024);
        else if (!strcmp(a, "--delta"))
            delta = parse_int(v, a, 1, 1 << 20);
        else if (!strcmp(a, "--answer"))
            answer = v;
        else if (!strcmp(a, "--dump-graph"))
            dump = v;
        else {
            char msg[256];
            snprintf(msg, sizeof msg, "unknown argument '%s'", a);
            usage(msg);
        }
    }
    if (!graph || scale < 0 || degree < 0 || !have_seed) usage("--graph, --scale, --degree and --seed are required");
    int kron;
    if (!strcmp(graph, "kron"))
        kron = 1;
    else if (!strcmp(graph, "uniform"))
        kron = 0;
    else
        usage("--graph must be kron or uniform");
    int kid = -1;
    static const char *names[] = {"bfs", "pr", "cc", "bc", "sssp"};
    if (kernel) {
        for (int k = 0; k < 5; k++)
            if (!strcmp(kernel, names[k])) kid = k;
        if (kid < 0) usage("--kernel must be bfs, pr, cc, bc or sssp");
    } else if (!dump) {
        usage("--kernel is required (unless only --dump-graph is wanted)");
    }
    if (answer && kid < 0) usage("--answer needs --kernel");

    graph_t g = build_graph(kron, (int)scale, (int)degree, (uint64_t)seed);
    fprintf(stderr, "n=%lld\nm=%lld\n", (long long)g.n, (long long)g.m);

    if (dump) {
        FILE *f = open_out(dump);
        fprintf(f, "%lld %lld\n", (long long)g.n, (long long)g.m);
        for (int64_t i = 0; i < g.m; i++)
            fprintf(f, "%lld %lld %d\n", (long long)EDGE_U(g.edges[i]),
                    (long long)EDGE_V(g.edges[i]), EDGE_W(g.edges[i]));
        close_out(f, dump);
    }
    if (kid < 0) return 0;

    /* GAP runs each kernel for several trials (from different sources); so do we, so that a
     * trace split by time sees the same kind of work in its training and test parts. */
    int ns = kid == 3 ? (int)nsources : 1;
    int64_t *sources = pick_sources(&g, (uint64_t)seed, ns * (int)trials);
    fprintf(stderr, "sources=");
    for (int i = 0; i < ns * (int)trials; i++)
        fprintf(stderr, "%s%lld", i ? "," : "", (long long)sources[i]);
    fprintf(stderr, "\ntrials=%lld\n", trials);

    void *result = NULL;
    double t0 = now_seconds();
    roi_begin();
    for (int t = 0; t < (int)trials; t++) {
        const int64_t *trial_sources = sources + (size_t)t * ns;
        void *trial_result = NULL;
        switch (kid) {
        case 0: trial_result = kernel_bfs(&g, trial_sources[0]); break;
        case 1: trial_result = kernel_pr(&g, 20, 1e-4); break;
        case 2: trial_result = kernel_cc(&g); break;
        case 3: trial_result = kernel_bc(&g, trial_sources, ns); break;
        case 4: trial_result = kernel_sssp(&g, trial_sources[0], delta); break;
        }
        if (t == 0)
            result = trial_result; /* --answer reports the first trial */
        else
            free(trial_result);
    }
    roi_end();
    double t1 = now_seconds();
    fprintf(stderr, "roi_seconds=%.6f\n", t1 - t0);

    if (answer) {
        FILE *f = open_out(answer);
        for (int64_t i = 0; i < g.n; i++) {
            switch (kid) {
            case 0: fprintf(f, "%d\n", ((int32_t *)result)[i]); break;
            case 2: fprintf(f, "%d\n", ((int32_t *)result)[i]); break;
            case 1:
            case 3: fprintf(f, "%.17g\n", ((double *)result)[i]); break;
            case 4: fprintf(f, "%lld\n", (long long)((int64_t *)result)[i]); break;
            }
        }
        close_out(f, answer);
    }
    free(result);
    free(sources);
    free(g.off);
    free(g.nbr);
    free(g.wnbr);
    free(g.edges);
    return 0;
}
