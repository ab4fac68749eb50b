/*
 * No-op region-of-interest markers for the plain (uninstrumented) build of graphkernels.
 * They stay real, non-inlined functions so that their addresses (nm) can mark the ROI for the
 * valgrind/lackey backend: the first instruction of roi_begin starts it, of roi_end stops it.
 */
__attribute__((noinline)) void roi_begin(void) { __asm__ volatile("" ::: "memory"); }

__attribute__((noinline)) void roi_end(void) { __asm__ volatile("" ::: "memory"); }
