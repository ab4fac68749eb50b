"""How the results pages write numbers: F1 values, sds, p-values and shares."""

from __future__ import annotations

import pandas as pd


def _fmt(value: float, digits: int = 4) -> str:
    return "n/a" if value is None or pd.isna(value) else f"{value:.{digits}f}"


def _fmt_sd(value: float, digits: int = 4) -> str:
    """An sd to digits decimals, or in scientific notation when it is not 0 but would read so."""
    if value is not None and pd.notna(value) and 0 < abs(value) < 0.5 * 10**-digits:
        return f"{value:.1e}"
    return _fmt(value, digits)


def _fmt_p(value: float) -> str:
    """A p-value to 3 decimals, or to 2 significant digits below 0.01 (0.0014 is not 0.001)."""
    if value is not None and pd.notna(value) and value < 1e-2:
        return f"{value:.1e}"
    return _fmt(value, 3)


def _fmt_share(value: float) -> str:
    """A fraction as a percentage to one decimal, or n/a."""
    return "n/a" if value is None or pd.isna(value) else f"{100 * value:.1f}%"


def _text(value: object) -> str:
    """A text cell read back from CSV: an empty one is NaN."""
    return "" if value is None or pd.isna(value) else str(value)
