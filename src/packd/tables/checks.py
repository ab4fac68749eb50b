"""The checks on the main table: is each teacher the ceiling, and did the models learn more
than the label prior (the learnability table)?"""

from __future__ import annotations

import numpy as np
import pandas as pd

from packd.tables.main import to_markdown

CEILING_BASELINES = ("frequency", "mlp", "no_kd")


def ceiling_table(table: pd.DataFrame) -> pd.DataFrame:
    """Does every teacher beat the zero-effort baselines and its own no-KD student on
    validation? One row per seed, app and arch, with each validation F1 and a verdict."""
    rows = table[table["protocol"] == "validation"]
    wide = rows.pivot_table(index=["seed", "app", "arch"], columns="method", values="val_f1")
    if "teacher" not in wide.columns:
        return pd.DataFrame()
    out = pd.DataFrame({"teacher_val_f1": wide["teacher"]})
    failures = pd.Series("", index=wide.index)
    for baseline in CEILING_BASELINES:
        if baseline in wide.columns:
            out[f"{baseline}_val_f1"] = wide[baseline]
            below = wide["teacher"] <= wide[baseline]
            failures[below] += f"{baseline} "
    out["teacher_is_ceiling"] = failures == ""
    out["teacher_not_above"] = failures.str.strip()
    return out.reset_index()


# A cell counts as collapsed to the label prior when the teacher's test F1 beats the
# bit-frequency baseline's by less than this: one F1 point, about the spread between seeds of a
# cell's F1. Below it the cell cannot tell a model that learned from the prior, so its
# distillation comparisons say nothing.
COLLAPSE_F1_MARGIN = 0.01
# A second, separate flag: the teacher's top-k bits (its degree-k prefetches before the filter)
# are the bit-frequency baseline's fixed top-k on all but fewer than this fraction of test
# samples. The baseline itself differs on none; a model that reads its input differs on most
# samples of an app whose deltas vary. A teacher can learn (its F1 well above the prior's, from
# the bits below its top k) and still rank the prior's k bits first almost everywhere, as on a
# mostly sequential stream: then its prefetches before the filter are a fixed-set prefetcher's
# (next-line's for +1, +2), and the prefetch table, not F1, says what it is worth.
PRIOR_TOP_K_DIFFERS = 0.10
LEARNABILITY_COLUMNS = [
    "seed",
    "app",
    "arch",
    "teacher_f1",
    "teacher_minus_frequency_f1",
    "teacher_minus_no_kd_f1",
    "teacher_minus_frequency_val_f1",
    "teacher_minus_no_kd_val_f1",
    "teacher_top_k_differs",
    "no_kd_top_k_differs",
    "collapsed",
    "collapse_reason",
    "top_k_is_prior",
    "missing",
]
LEARNABILITY_GAPS = [
    "teacher_minus_frequency_f1",
    "teacher_minus_no_kd_f1",
    "teacher_minus_frequency_val_f1",
    "teacher_minus_no_kd_val_f1",
    "teacher_top_k_differs",
]


def learnability_table(table: pd.DataFrame) -> pd.DataFrame:
    """Did the models learn more than the label prior? One row per seed, app and arch of the
    main table's validation protocol.

    teacher_f1 is the teacher's test F1; teacher_minus_frequency_f1 and teacher_minus_no_kd_f1
    its gaps to the bit-frequency baseline and to its own no-KD student (the same on validation
    F1: `*_val_f1`); teacher_top_k_differs and no_kd_top_k_differs the fraction of test samples
    whose top-k bits (k = the prefetch degree) are not the frequency baseline's. `collapsed`: the
    teacher beats the frequency baseline's test F1 by less than COLLAPSE_F1_MARGIN
    (`collapse_reason` gives the gap); `top_k_is_prior`: its top-k differs from the baseline's on
    fewer than PRIOR_TOP_K_DIFFERS of the samples, whatever its F1. A method
    absent from the run leaves its gaps NaN and is named in `missing`, as is a top-k comparison
    the metrics lack (it needs no frequency model: it comes from the training labels).
    """
    rows = table[table["protocol"] == "validation"]
    keys = ["seed", "app", "arch"]
    teacher = rows[rows["method"] == "teacher"]
    if teacher.empty:
        return pd.DataFrame(columns=LEARNABILITY_COLUMNS)
    cells = pd.MultiIndex.from_frame(teacher[keys])
    by_method = rows.set_index([*keys, "method"])
    methods = set(rows["method"])

    def of(column: str, method: str) -> pd.Series:
        """column of method's row in every cell; NaN where the method or column is absent."""
        if column not in by_method.columns or method not in methods:
            return pd.Series(np.nan, index=cells, dtype=float)
        return by_method[column].xs(method, level="method").reindex(cells).astype(float)

    out = pd.DataFrame(index=cells)
    out["teacher_f1"] = of("f1", "teacher")
    for baseline in ("frequency", "no_kd"):
        out[f"teacher_minus_{baseline}_f1"] = out["teacher_f1"] - of("f1", baseline)
    for baseline in ("frequency", "no_kd"):
        out[f"teacher_minus_{baseline}_val_f1"] = of("val_f1", "teacher") - of("val_f1", baseline)
    differs = "top_k_differs_from_frequency"
    out["teacher_top_k_differs"] = of(differs, "teacher")
    out["no_kd_top_k_differs"] = of(differs, "no_kd")
    no_gain = out["teacher_minus_frequency_f1"] < COLLAPSE_F1_MARGIN  # NaN: False
    out["collapsed"] = no_gain
    out["collapse_reason"] = [
        f"test F1 only {gap:+.4f} above the frequency baseline" if flat else ""
        for gap, flat in zip(out["teacher_minus_frequency_f1"], no_gain, strict=True)
    ]
    out["top_k_is_prior"] = out["teacher_top_k_differs"] < PRIOR_TOP_K_DIFFERS  # NaN: False
    present = rows.groupby(keys)["method"].agg(set).reindex(cells)
    out["missing"] = [
        " ".join(
            [method for method in ("frequency", "no_kd") if method not in methods]
            + ([differs] if pd.isna(share) else [])
        )
        for methods, share in zip(present, out["teacher_top_k_differs"], strict=True)
    ]
    return out.reset_index().sort_values(keys, ignore_index=True)[LEARNABILITY_COLUMNS]


def learnability_summary(learnability: pd.DataFrame) -> pd.DataFrame:
    """The learnability table's gaps (and the teacher's top-k differs fraction) over cells: one
    row per column of LEARNABILITY_GAPS (`measure`) with its mean over the cells that have it
    (`mean_over_cells`, NaN in none) and their number (`cells`)."""
    return pd.DataFrame(
        [
            {
                "measure": column,
                "mean_over_cells": learnability[column].astype(float).mean(),
                "cells": int(learnability[column].notna().sum()),
            }
            for column in LEARNABILITY_GAPS
        ],
        columns=["measure", "mean_over_cells", "cells"],
    )


def _flagged(learnability: pd.DataFrame, flag: str) -> pd.DataFrame:
    if learnability.empty:
        return learnability
    return learnability[learnability[flag].astype(str).str.lower() == "true"]


def collapsed_cells(learnability: pd.DataFrame) -> pd.DataFrame:
    """The learnability table's rows flagged `collapsed` (read back from CSV too)."""
    return _flagged(learnability, "collapsed")


def prior_top_k_cells(learnability: pd.DataFrame) -> pd.DataFrame:
    """The learnability table's rows flagged `top_k_is_prior` (read back from CSV too)."""
    return _flagged(learnability, "top_k_is_prior")


def learnability_markdown(learnability: pd.DataFrame) -> str:
    """The learnability table, its summary over cells and the count of collapsed cells."""
    collapsed = collapsed_cells(learnability)
    prior_top_k = prior_top_k_cells(learnability)
    return (
        to_markdown(learnability)
        + "\n"
        + to_markdown(learnability_summary(learnability))
        + f"\nCollapsed to the label prior: {len(collapsed)} of {len(learnability)} cells "
        f"(the teacher's test F1 beats the frequency baseline's by less than "
        f"{COLLAPSE_F1_MARGIN}).\n"
        + f"Top-k is the prior's: {len(prior_top_k)} of {len(learnability)} cells (the "
        f"teacher's top-k differs from the frequency baseline's on fewer than "
        f"{PRIOR_TOP_K_DIFFERS:.0%} of test samples).\n"
    )
