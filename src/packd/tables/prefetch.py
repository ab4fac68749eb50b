"""The prefetch table: each model's and classic prefetcher's replay figures per app and arch,
and whether the models' F1 ranking holds for coverage."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
from scipy import stats

from packd.methods import method_rank

# Each replay report's figures in the prefetch table (packd.prefetch.PrefetchReport).
PREFETCH_VALUES = [
    "accuracy",
    "coverage",
    "miss_reduction",
    "extra_traffic",
    "issued",
    "filled",
    "redundant",
    "late",
    "useful",
    "baseline_misses",
]
PREFETCH_COLUMNS = [
    "app",
    "arch",
    "kind",
    "name",
    "f1",
    *PREFETCH_VALUES,
    "f1_coverage_rho",
    "f1_coverage_p",
    "f1_ranking_holds",
]
# Spearman rho at or above which the models' F1 ranking counts as holding for coverage.
RANKING_AGREEMENT_RHO = 0.5


def _ranking_agreement(f1: pd.Series, coverage: pd.Series) -> tuple[float, float, str]:
    """Spearman rho of F1 and coverage over one cell's models, its two-sided p, and 'yes', 'no'
    or 'n/a' (rho >= RANKING_AGREEMENT_RHO)."""
    if len(f1) < 3 or f1.nunique() < 2 or coverage.nunique() < 2:
        return float("nan"), float("nan"), "n/a"  # fewer than 3 models or all tied: no ranking
    result = stats.spearmanr(f1, coverage)
    rho = float(result.statistic)
    return rho, float(result.pvalue), "yes" if rho >= RANKING_AGREEMENT_RHO else "no"


def prefetch_table(reports: Sequence[dict], metrics: Sequence[dict]) -> pd.DataFrame:
    """Prefetch figures per app and arch: each model's row (with its test F1), then the classic
    prefetchers' rows of that app, and whether the F1 ranking of the models holds for coverage.

    reports are the prefetch JSONs (seed, app, source: an arch or "classic", name, and the
    PREFETCH_VALUES: counts and ratios of the prefetches as written, filtered or not); metrics
    the models' metrics JSONs (seed, app, arch, method, f1). Model rows are means over seeds.
    f1_coverage_rho and f1_coverage_p: Spearman's rho of the cell's models' F1 and coverage and
    its p; f1_ranking_holds: 'yes' when rho >= RANKING_AGREEMENT_RHO ('n/a' with fewer than 3
    models or no ranking).
    """
    f1_of = {
        (entry.get("seed", 0), entry["app"], entry["arch"], entry["method"]): entry["f1"]
        for entry in metrics
    }
    row_columns = PREFETCH_COLUMNS[: 5 + len(PREFETCH_VALUES)]
    per_seed = pd.DataFrame(
        [
            {
                "app": report["app"],
                "arch": report["source"],
                "kind": "model",
                "name": report["name"],
                "f1": f1_of[
                    (report.get("seed", 0), report["app"], report["source"], report["name"])
                ],
                **{column: report[column] for column in PREFETCH_VALUES},
            }
            for report in reports
            if report["source"] != "classic"
        ],
        columns=row_columns,
    )
    # A model's row is its mean over seeds (the classic prefetchers do not depend on the seed).
    models = per_seed.groupby(["app", "arch", "kind", "name"], as_index=False, sort=False).mean()
    classic = list(
        {
            (report["app"], report["name"]): report
            for report in reports
            if report["source"] == "classic"
        }.values()
    )
    cells = []
    for (app, arch), rows in models.groupby(["app", "arch"], sort=True):
        rows = rows.sort_values("name", key=lambda names: names.map(method_rank), kind="stable")
        classic_rows = pd.DataFrame(
            [
                {"app": app, "arch": arch, "kind": "classic", "name": report["name"]}
                | {column: report[column] for column in PREFETCH_VALUES}
                for report in classic
                if report["app"] == app
            ],
            columns=row_columns,
        )
        rho, p_value, holds = _ranking_agreement(rows["f1"], rows["coverage"])
        cell = pd.concat([rows, classic_rows], ignore_index=True)
        cells.append(
            cell.assign(f1_coverage_rho=rho, f1_coverage_p=p_value, f1_ranking_holds=holds)
        )
    if not cells:
        return pd.DataFrame(columns=PREFETCH_COLUMNS)
    return pd.concat(cells, ignore_index=True)[PREFETCH_COLUMNS]
