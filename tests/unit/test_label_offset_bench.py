"""benchmarks_scripts/label_offset.py end to end on a tiny synthetic run (one app, tiny LSTMs)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from packd.trace_io import write_trace_parquet

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks_scripts/label_offset.py"
PHASE = {"epochs": 3, "lr": 0.01, "batch_size": 256, "patience": 1, "min_epochs": 2}
CONFIG = {
    "seed": 1,
    "apps": {"syn": {}},
    "archs": ["lstm", "resnet"],  # the script trains the first only by default
    "models": {
        "lstm": {"teacher": {"hidden": 8, "layers": 1}, "student": {"hidden": 3, "layers": 1}}
    },
    "cache": {
        "line_bytes": 64,
        "levels": [
            {"name": "L1D", "size_kib": 1, "ways": 2},
            {"name": "LLC", "size_kib": 4, "ways": 4},
        ],
    },
    "dataset": {
        "history": 10,
        "look_forward": 16,
        "label_offset": 0,
        "delta_bound": 128,
        "max_samples": {"train": 5000, "val": 400, "test": 400},
        "split": {"warmup": 0.05, "train": 0.7, "val": 0.2, "val_blocks": 2},
    },
    "train": {"device": "cpu", "amp": False, "threads": 1, "teacher": PHASE, "student": PHASE},
    "evaluate": {"prefetch_degree": 2, "prefetch_max_accesses": 600},
}


def _trace(n: int = 3000) -> pd.DataFrame:
    """Two strided phases over 400 blocks (revisits give LLC hits as well as misses)."""
    rng = np.random.default_rng(0)
    strides = np.where(np.arange(n) % 600 < 300, 1, 3)
    blocks = 10_000 + (np.cumsum(strides) + rng.integers(0, 2, n)) % 400
    return pd.DataFrame(
        {
            "instr_id": np.arange(n, dtype=np.uint64) * 7 + 1,
            "cycle": np.arange(n) * 20,
            "addr": (blocks << 6).astype(np.uint64),
            "pc": (0x400000 + (strides == 3) * 16).astype(np.uint64),
            "llc_hit": rng.random(n) < 0.3,
        }
    )


def test_label_offset_page_has_every_model_at_both_offsets_and_the_classic_references(tmp_path):
    results = tmp_path / "results"
    (results / "traces").mkdir(parents=True)
    write_trace_parquet(_trace(), results / "traces/syn.parquet", {"source": "synthetic"})
    configfile = tmp_path / "config.yaml"
    configfile.write_text(yaml.safe_dump(CONFIG))
    page = tmp_path / "label_offset.md"
    completed = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--results",
            str(results),
            "--configfile",
            str(configfile),
            "--workers",
            "1",
            "--train-samples",
            "800",
            "--epochs",
            "2",
            "--markdown",
            str(page),
        ],  # fmt: skip
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    out = completed.stdout
    assert "training split cap 800 samples, teacher 2 / student 2 epochs" in out
    table = out.split("per cell:\n")[1].split("\n\n")[0].splitlines()[2:]  # below the header
    models = [line.split()[-9] for line in table]
    assert models == ["next_line", "best_offset", "teacher", "no_kd", "teacher", "no_kd"]
    assert [line.split()[-10] for line in table[2::2]] == ["0", "3"]  # lstm only, both offsets
    for line in table:
        issued, filled, redundant, late, useful = map(int, line.split()[-5:])
        assert filled + redundant + late <= issued and useful <= filled
    assert "change from offset 0, per model:" in out
    text = page.read_text()
    assert text.startswith("# Label offset: timely labels")
    assert "distance - 1 = 3" in text and out.strip().splitlines()[0] in text
