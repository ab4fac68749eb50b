"""The paper's tables, built from the per-model metrics JSON files.

- :mod:`packd.tables.main`: the main table (long form), its summary over seeds, the
  learning-rate selection, the compression table and the Markdown writer;
- :mod:`packd.tables.checks`: is each teacher the ceiling, and the learnability check;
- :mod:`packd.tables.significance`: paired t tests by seed, Holm's correction, t intervals and
  the seed noise;
- :mod:`packd.tables.prefetch`: the prefetch table;
- :mod:`packd.tables.variants`: the sweep and frontier tables.
"""

from packd.tables.checks import (
    CEILING_BASELINES,
    COLLAPSE_F1_MARGIN,
    LEARNABILITY_COLUMNS,
    LEARNABILITY_GAPS,
    PRIOR_TOP_K_DIFFERS,
    ceiling_table,
    collapsed_cells,
    learnability_markdown,
    learnability_summary,
    learnability_table,
    prior_top_k_cells,
)
from packd.tables.main import (
    MAIN_COLUMNS,
    TIMING_COLUMNS,
    compression_table,
    main_summary,
    main_table,
    read_metrics,
    relative_improvement,
    selection_table,
    to_markdown,
)
from packd.tables.prefetch import (
    PREFETCH_COLUMNS,
    PREFETCH_VALUES,
    RANKING_AGREEMENT_RHO,
    prefetch_table,
)
from packd.tables.significance import (
    SIGNIFICANCE_ALPHA,
    ZERO_SD,
    holm_adjust,
    seed_noise_table,
    significance_comparisons,
    significance_table,
    t_interval,
)
from packd.tables.variants import frontier_table, sweep_table

__all__ = [
    "CEILING_BASELINES",
    "COLLAPSE_F1_MARGIN",
    "LEARNABILITY_COLUMNS",
    "LEARNABILITY_GAPS",
    "PRIOR_TOP_K_DIFFERS",
    "MAIN_COLUMNS",
    "PREFETCH_COLUMNS",
    "PREFETCH_VALUES",
    "RANKING_AGREEMENT_RHO",
    "SIGNIFICANCE_ALPHA",
    "TIMING_COLUMNS",
    "ZERO_SD",
    "ceiling_table",
    "collapsed_cells",
    "prior_top_k_cells",
    "compression_table",
    "frontier_table",
    "holm_adjust",
    "learnability_markdown",
    "learnability_summary",
    "learnability_table",
    "main_summary",
    "main_table",
    "prefetch_table",
    "read_metrics",
    "relative_improvement",
    "seed_noise_table",
    "selection_table",
    "significance_comparisons",
    "significance_table",
    "sweep_table",
    "t_interval",
    "to_markdown",
]
