"""Prefetch evaluation: prefetch files, an LLC replay with prefetches, and classic prefetchers.

- :mod:`packd.prefetch.files`: prefetches (a model's, from its scores), the prefetch filter and
  the ML-DPC prefetch files;
- :mod:`packd.prefetch.replay`: the LLC replay with prefetches and its report;
- :mod:`packd.prefetch.classic`: next-line, IP-stride and best-offset.

The defaults the rules pass (degree, fill distance, filter window) and the classic prefetchers'
names live in :mod:`packd.plan`, which the DAG imports without numba.
"""

from packd.prefetch.classic import (
    BEST_OFFSET_OFFSETS,
    best_offset_prefetches,
    classic_prefetches,
    ip_stride_prefetches,
    next_line_prefetches,
)
from packd.prefetch.files import (
    Prefetches,
    bit_deltas,
    filter_prefetches,
    limit_per_load,
    prefetches_from_scores,
    ranked_candidates,
    read_prefetch_file,
    write_prefetch_file,
)
from packd.prefetch.replay import (
    PrefetchReport,
    ReplayCounts,
    evaluate_prefetches,
    llc_hit_flags,
    replay_llc,
)

__all__ = [
    "BEST_OFFSET_OFFSETS",
    "PrefetchReport",
    "Prefetches",
    "ReplayCounts",
    "best_offset_prefetches",
    "bit_deltas",
    "classic_prefetches",
    "evaluate_prefetches",
    "filter_prefetches",
    "ip_stride_prefetches",
    "limit_per_load",
    "llc_hit_flags",
    "next_line_prefetches",
    "prefetches_from_scores",
    "ranked_candidates",
    "read_prefetch_file",
    "replay_llc",
    "write_prefetch_file",
]
