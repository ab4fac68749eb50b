/*
 * Tracer runtime for graphkernels built with
 *   clang -O2 -fsanitize-coverage=inline-8bit-counters,trace-loads
 * Compile THIS file without any -fsanitize-coverage flag (otherwise the hooks would trace
 * themselves).
 *
 * Every load of the instrumented code calls __sanitizer_cov_loadN(addr) just before it loads.
 * While the region of interest is active (between roi_begin() and roi_end()) the hook stores one
 * 8-byte little-endian record per load straight into the output file, which is memory-mapped:
 *   bits 63..47  the load site: the low 17 bits of its code address
 *   bits 46..0   the loaded virtual address (Linux gives user space the addresses below 2^47)
 * The program prints trace_pc_base=0x... (the address of __executable_start) and
 * trace_records=N on stderr at exit. The code lies in [base, base + 128 KiB) (checked at
 * start-up), so pc = base + ((site - base) mod 2^17) rebuilds each full PC.
 * $PACKD_TRACE_OUT names the file; without it nothing is recorded (the program runs normally).
 * One cursor for the whole process: the ROI must run on one thread (the graph kernels do).
 * $PACKD_MAX_LOADS (optional) stops recording after that many loads; 0 means no limit (a
 * fixed-width value keeps the environment's size, hence the stack's addresses, the same).
 *
 * Why it is built this way (see benchmarks_scripts/bench_tracing.py for the figures):
 * - Writing the records with write(2) cost more than the kernel and the hooks together; the
 *   mapping lets the hook's store be the only copy. Its pages are faulted in before the ROI
 *   when a load limit bounds the trace (config.yaml's tracing.max_loads), and otherwise by a
 *   helper thread ahead of the cursor (MADV_POPULATE_WRITE), which cannot keep up with the
 *   fastest kernels.
 * - Records are written with non-temporal stores on x86-64, so that they do not evict the
 *   kernel's own data from the caches, and the hot path has no range check: the site keeps
 *   the PC's low bits (checked once at start-up) and user addresses fit in 47 bits.
 * - With PACKD_INLINE_HOOKS the build links this file's bitcode with the kernel's and inlines the
 *   hooks into every load site; the site is then the address of an instruction at the load
 *   (read with lea/adr), not a call's return address.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23 /* Linux >= 5.14; older kernels answer EINVAL (handled) */
#endif

#define PACKD_SITE_BITS 17
#define PACKD_ADDR_BITS 47
/* The file is mapped for this many records (virtual: only touched pages cost memory), whatever
 * the load limit, so that the kernel's own mappings land at the same addresses with or without
 * one. A trace that reaches it stops with an error rather than wrap. */
#define PACKD_DEFAULT_CAPACITY (1ull << 32)
#define PACKD_AHEAD_BYTES (32ull << 20) /* pages faulted in ahead of the cursor */
#define PACKD_PREFAULT_MAX (2ull << 30)  /* faulted in before the ROI when the limit is known */
#define PACKD_STEP_BYTES (2ull << 20)

extern char __executable_start[];
extern char __etext[];

/* Hot state: while the ROI is active, cur is the next free record and lim the end of the
 * load limit; outside it cur is NULL, so the inactive hook costs one load and one branch. */
static uint64_t *cur, *lim;
static uint64_t *map_base;
static size_t capacity; /* records the mapping holds */
static size_t limit;    /* records to keep: capacity or $PACKD_MAX_LOADS */
static int limit_is_max_loads;
static int fd = -1;
static int inited;
static const char *out_path;

static size_t prefaulted_bytes; /* faulted in at start-up */
static pthread_t helper;
static int helper_running, helper_stop;

static void die(const char *what) {
    /* A truncated trace must not look like a complete one. */
    fprintf(stderr, "packd tracer: %s (%s): %s\n", what, out_path ? out_path : "?",
            errno ? strerror(errno) : "");
    _exit(3);
}

/* Faults [start, start + len) of the mapping in without changing it; *use_madvise turns 0 for
 * good once MADV_POPULATE_WRITE is refused (older kernels), and a locked add of 0 per page does
 * the work instead. */
static void fault_in(char *start, size_t len, int *use_madvise) {
    if (*use_madvise && madvise(start, len, MADV_POPULATE_WRITE) == 0) return;
    *use_madvise = 0;
    for (char *p = start; p < start + len; p += 4096) __atomic_fetch_add(p, 0, __ATOMIC_RELAXED);
}

/* Faults the mapping's pages in ahead of the kernel's cursor. MADV_POPULATE_WRITE never changes
 * a page's contents, so racing with the stores of the kernel's thread is harmless. */
static void *prefault_ahead(void *unused) {
    (void)unused;
    char *base = (char *)map_base;
    char *end = (char *)(map_base + limit);
    char *done = base + prefaulted_bytes;
    int can_populate = 1;
    while (!__atomic_load_n(&helper_stop, __ATOMIC_ACQUIRE)) {
        uint64_t *c = __atomic_load_n(&cur, __ATOMIC_RELAXED);
        char *at = c ? (char *)c : done;
        if (done < at) done = (char *)((uintptr_t)at & ~(uintptr_t)4095); /* it overtook us */
        char *want = at + PACKD_AHEAD_BYTES < end ? at + PACKD_AHEAD_BYTES : end;
        if (done >= want) {
            struct timespec pause = {0, 20000};
            nanosleep(&pause, NULL);
            continue;
        }
        size_t len = (size_t)(want - done) < PACKD_STEP_BYTES ? (size_t)(want - done)
                                                             : PACKD_STEP_BYTES;
        len = (len + 4095) & ~(size_t)4095;
        if (done + len > end) len = (size_t)(end - done);
        fault_in(done, len, &can_populate);
        done += len;
    }
    return NULL;
}

static void stop_helper(void) {
    if (!helper_running) return;
    __atomic_store_n(&helper_stop, 1, __ATOMIC_RELEASE);
    pthread_join(helper, NULL);
    helper_running = 0;
}

static size_t n_written; /* records kept when recording stopped */

static void stop_recording(void) {
#if defined(__x86_64__)
    __builtin_ia32_sfence(); /* the non-temporal stores are visible before anyone reads */
#endif
    if (cur) n_written = (size_t)(cur - map_base);
    __atomic_store_n(&cur, (uint64_t *)NULL, __ATOMIC_RELAXED);
    lim = NULL;
}

/* Slow path: the mapping is full. At the load limit that is the intended end; otherwise the
 * trace is longer than the mapping and must not be cut silently. */
__attribute__((noinline)) static void mapping_full(void) {
    stop_recording();
    if (!limit_is_max_loads) {
        errno = 0;
        die("trace longer than the mapped capacity; set PACKD_MAX_LOADS");
    }
}

static void finish(void) {
    stop_recording();
    stop_helper();
    if (fd < 0) return;
    if (ftruncate(fd, (off_t)(n_written * sizeof(uint64_t))) != 0) die("cannot truncate");
    if (munmap(map_base, capacity * sizeof(uint64_t)) != 0) die("cannot unmap");
    if (close(fd) != 0) die("cannot close");
    fd = -1;
    fprintf(stderr, "trace_pc_base=0x%llx\ntrace_records=%zu\n",
            (unsigned long long)(uintptr_t)__executable_start, n_written);
}

/* Runs before main: opening and mapping the file and faulting in its first pages are setup,
 * like graph construction, not part of the traced kernel's time. */
__attribute__((constructor)) static void init_once(void) {
    if (inited) return;
    inited = 1;
    out_path = getenv("PACKD_TRACE_OUT");
    if (!out_path || !*out_path) return;
    capacity = limit = PACKD_DEFAULT_CAPACITY;
    const char *m = getenv("PACKD_MAX_LOADS");
    if (m && *m) {
        char *end = NULL;
        unsigned long long v = strtoull(m, &end, 10);
        if (*end != '\0') {
            fprintf(stderr, "packd tracer: bad PACKD_MAX_LOADS=%s\n", m);
            exit(3);
        }
        if (v > 0 && v < capacity) {
            limit = v;
            limit_is_max_loads = 1;
        }
    }
    if ((uintptr_t)(__etext - __executable_start) > (1u << PACKD_SITE_BITS)) {
        fprintf(stderr, "packd tracer: the code spans %zu bytes, more than the record's %d-bit "
                "load site can tell apart\n", (size_t)(__etext - __executable_start),
                PACKD_SITE_BITS);
        exit(3);
    }
    fd = open(out_path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) die("cannot open $PACKD_TRACE_OUT");
    size_t bytes = capacity * sizeof(uint64_t);
    map_base = MAP_FAILED;
    if (ftruncate(fd, (off_t)bytes) == 0)
        map_base = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (map_base == MAP_FAILED && limit_is_max_loads) {
        /* A cap on address space (ulimit -v on some clusters) or on file size: map only what
         * the limit needs. The kernel's own addresses may then differ from an unlimited run. */
        capacity = limit;
        bytes = capacity * sizeof(uint64_t);
        if (ftruncate(fd, (off_t)bytes) == 0)
            map_base = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    }
    if (map_base == MAP_FAILED) die("cannot size or map the trace file (set PACKD_MAX_LOADS?)");
    size_t first = limit * sizeof(uint64_t);
    size_t most = limit_is_max_loads ? PACKD_PREFAULT_MAX : PACKD_AHEAD_BYTES;
    if (first > most) first = most;
    int use_madvise = 1;
    fault_in((char *)map_base, first, &use_madvise);
    prefaulted_bytes = first;
    atexit(finish);
}

__attribute__((noinline)) void roi_begin(void) {
    if (!inited) init_once();
    if (fd >= 0 && !cur && n_written < limit) {
        lim = map_base + limit;
        __atomic_store_n(&cur, map_base + n_written, __ATOMIC_RELAXED);
        if (!helper_running && prefaulted_bytes < limit * sizeof(uint64_t)) {
            helper_stop = 0;
            helper_running = pthread_create(&helper, NULL, prefault_ahead, NULL) == 0;
        }
    }
    __asm__ volatile("" ::: "memory");
}

__attribute__((noinline)) void roi_end(void) {
    stop_recording();
    stop_helper();
    __asm__ volatile("" ::: "memory");
}

static inline __attribute__((always_inline)) void record(uint64_t pc, const void *addr) {
    uint64_t *c = cur;
    /* Laid out for the ROI: with the recording path out of line, each load took two taken
     * jumps, and pr's ROI ran 3.4x instead of 2.6x the uninstrumented time. */
    if (__builtin_expect(c == NULL, 0)) return;
    uint64_t rec = (pc << PACKD_ADDR_BITS) | (uint64_t)(uintptr_t)addr;
#if defined(__x86_64__)
    __builtin_ia32_movnti64((long long *)c, (long long)rec);
#else
    *c = rec;
#endif
    ++c;
    /* Relaxed atomic: a plain store, but one the compiler keeps in place for the helper. */
    __atomic_store_n(&cur, c, __ATOMIC_RELAXED);
    if (__builtin_expect(c == lim, 0)) mapping_full();
}

#if defined(PACKD_INLINE_HOOKS) && defined(__x86_64__)
#define PACKD_SITE_PC(pc) __asm__ volatile("lea 0(%%rip), %0" : "=r"(pc))
#elif defined(PACKD_INLINE_HOOKS) && defined(__aarch64__)
#define PACKD_SITE_PC(pc) __asm__ volatile("adr %0, ." : "=r"(pc))
#else
#define PACKD_SITE_PC(pc) (pc) = (uint64_t)(uintptr_t)__builtin_return_address(0)
#endif

#ifdef PACKD_INLINE_HOOKS
#define PACKD_HOOK_ATTR __attribute__((always_inline))
#else
#define PACKD_HOOK_ATTR
#endif

#define PACKD_HOOK(N)                                    \
    PACKD_HOOK_ATTR void __sanitizer_cov_load##N(void *addr) { \
        uint64_t pc;                                     \
        PACKD_SITE_PC(pc);                               \
        record(pc, addr);                                \
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
