/*
 * Tracer runtime for graphkernels built with
 *   clang -O2 -fsanitize-coverage=inline-8bit-counters,trace-loads
 * Compile THIS file without any -fsanitize-coverage flag (otherwise the hooks would trace
 * themselves).
 *
 * Every load of the instrumented code calls __sanitizer_cov_loadN(addr) just before it loads.
 * While the region of interest is active (between roi_begin() and roi_end()) the hook appends a
 * fixed-size little-endian record {uint64 pc, uint64 addr} to an in-memory buffer; full buffers
 * are written with one fwrite to the file named by $PACKD_TRACE_OUT. pc is the hook's return
 * address, i.e. a stable code address identifying the load site.
 * $PACKD_MAX_LOADS (optional) stops recording after that many loads.
 * Without $PACKD_TRACE_OUT nothing is recorded (the program runs normally).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct {
    uint64_t pc;
    uint64_t addr;
} packd_rec_t;

#define PACKD_BUF_RECS (1u << 20) /* 16 MiB buffer: one write per million loads */

static packd_rec_t *buf;
/* Hot state: while the ROI is active, cur is the next free record and lim where the hook must
 * call the slow path (buffer full or PACKD_MAX_LOADS reached); outside it cur is NULL, so the
 * inactive hook costs one load and one branch. A cursor (not index + counters) keeps the
 * per-load dependency chain to one pointer. */
static packd_rec_t *cur, *lim;
static uint64_t remaining; /* loads still allowed, counted from buf (not from cur) */
static int inited;
static FILE *out;
static const char *out_path;

static void write_records(size_t n) {
    if (n && out) {
        if (fwrite(buf, sizeof(packd_rec_t), n, out) != n) {
            /* A truncated trace must not look like a complete one. */
            fprintf(stderr, "packd tracer: write to %s failed\n", out_path);
            _exit(3);
        }
    }
    remaining -= n;
}

static void arm(void) {
    if (out && remaining > 0) {
        cur = buf;
        lim = buf + (remaining < PACKD_BUF_RECS ? remaining : PACKD_BUF_RECS);
    } else {
        cur = lim = NULL;
    }
}

/* Slow path: flush the (full) buffer, then go on or stop at the load limit. */
__attribute__((noinline)) static void buffer_full(void) {
    write_records((size_t)(cur - buf));
    arm();
}

static void flush_and_stop(void) {
    if (cur) write_records((size_t)(cur - buf));
    cur = lim = NULL;
}

static void finish(void) {
    flush_and_stop();
    if (out) {
        if (fclose(out) != 0) {
            fprintf(stderr, "packd tracer: closing %s failed\n", out_path);
            _exit(3);
        }
        out = NULL;
    }
}

/* Runs before main: opening the file and touching the buffer's pages (page faults) are setup,
 * like graph construction, not part of the traced kernel's time. */
__attribute__((constructor)) static void init_once(void) {
    if (inited) return;
    inited = 1;
    out_path = getenv("PACKD_TRACE_OUT");
    if (!out_path || !*out_path) return;
    out = fopen(out_path, "wb");
    if (!out) {
        perror("packd tracer: cannot open $PACKD_TRACE_OUT");
        exit(3);
    }
    buf = (packd_rec_t *)malloc(PACKD_BUF_RECS * sizeof(packd_rec_t));
    if (!buf) {
        fprintf(stderr, "packd tracer: out of memory\n");
        exit(3);
    }
    /* Non-zero: clang turns malloc + memset(0) into calloc, which would touch nothing. */
    memset(buf, 0xFF, PACKD_BUF_RECS * sizeof(packd_rec_t));
    remaining = UINT64_MAX;
    const char *m = getenv("PACKD_MAX_LOADS");
    if (m && *m) {
        char *end = NULL;
        unsigned long long v = strtoull(m, &end, 10);
        if (*end != '\0') {
            fprintf(stderr, "packd tracer: bad PACKD_MAX_LOADS=%s\n", m);
            exit(3);
        }
        remaining = v;
    }
    atexit(finish);
}

__attribute__((noinline)) void roi_begin(void) {
    if (!inited) init_once();
    if (!cur) arm();
    __asm__ volatile("" ::: "memory");
}

__attribute__((noinline)) void roi_end(void) {
    flush_and_stop();
    if (out) fflush(out);
    __asm__ volatile("" ::: "memory");
}

static inline __attribute__((always_inline)) void record(uint64_t pc, const void *addr) {
    packd_rec_t *c = cur;
    if (__builtin_expect(c == NULL, 1)) return;
    c->pc = pc;
    c->addr = (uint64_t)(uintptr_t)addr;
    cur = ++c;
    if (__builtin_expect(c == lim, 0)) buffer_full();
}

#define PACKD_HOOK(N)                                                     \
    void __sanitizer_cov_load##N(void *addr) {                            \
        record((uint64_t)(uintptr_t)__builtin_return_address(0), addr);   \
    }

PACKD_HOOK(1)
PACKD_HOOK(2)
PACKD_HOOK(4)
PACKD_HOOK(8)
PACKD_HOOK(16)

/* Required by inline-8bit-counters (the coverage mode trace-loads needs beside it). */
void __sanitizer_cov_8bit_counters_init(char *start, char *end) {
    (void)start;
    (void)end;
}
