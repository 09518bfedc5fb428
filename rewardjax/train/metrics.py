"""Metrics: a progress bar on the terminal, a JSONL file, TensorBoard if installed, and a
plot of the curves at the end."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Mapping

import numpy as np


def _scalar(v) -> float:
    return float(np.asarray(v))


def is_writer() -> bool:
    """Whether this process writes logs, plots and results: process 0 of a multi-host
    run (every process computes the same figures; one copy is kept)."""
    import jax
    return jax.process_index() == 0


class MetricsLogger:
    """Reads device metrics once per call (one host sync per log interval). Only
    process 0 writes (`is_writer`); the others compute and return the rows."""

    def __init__(self, out_dir: str | os.PathLike, *, total_steps: int | None = None,
                 name: str = "metrics", progress: bool = True, tensorboard: bool = True,
                 initial_step: int = 0):
        self.out_dir = Path(out_dir)
        self.path = self.out_dir / f"{name}.jsonl"
        self._file = self._bar = self._tb = None
        if not is_writer():
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "a")
        if progress:
            from tqdm.auto import tqdm
            self._bar = tqdm(total=total_steps, initial=initial_step, dynamic_ncols=True,
                             desc=name, mininterval=1.0)
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter  # needs the tensorboard package
                self._tb = SummaryWriter(str(self.out_dir / "tb"))
            except Exception:  # TensorBoard is optional
                self._tb = None

    def log(self, step: int, metrics: Mapping, *, advance: int = 0) -> dict:
        row = {"step": int(step), **{k: _scalar(v) for k, v in metrics.items()}}
        if self._file is None:
            return row
        self._file.write(json.dumps(row) + "\n")
        self._file.flush()
        if self._tb is not None:
            for k, v in row.items():
                if k != "step" and math.isfinite(v):
                    self._tb.add_scalar(k, v, int(step))
        if self._bar is not None:
            keys = [k for k in ("loss", "accuracy", "reward/mean", "eval/accuracy") if k in row]
            self._bar.set_postfix({k: f"{row[k]:.4g}" for k in keys}, refresh=False)
            if advance:
                self._bar.update(advance)
        return row

    def close(self):
        if self._file is not None:
            self._file.close()
        if self._bar is not None:
            self._bar.close()
        if self._tb is not None:
            self._tb.close()


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def plot_curves(path: str | os.PathLike, keys: list[str], out: str | os.PathLike,
                *, title: str = "") -> Path:
    """Plots `keys` of a metrics JSONL against step into a PNG (one panel per key);
    process 0 only."""
    if not is_writer():
        return Path(out)
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_jsonl(path)
    keys = [k for k in keys if any(k in r for r in rows)]
    fig, axes = plt.subplots(1, max(len(keys), 1), figsize=(4 * max(len(keys), 1), 3), squeeze=False)
    for ax, k in zip(axes[0], keys):
        pts = [(r["step"], r[k]) for r in rows if k in r]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="." if len(pts) < 50 else None)
        ax.set_title(k)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    out = Path(out)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def write_result(out_dir: str | os.PathLike, result: Mapping, *, name: str = "result.json") -> str:
    """Writes `result` as JSON in out_dir and returns the `RESULT k=v ...` line (printed);
    process 0 only writes and prints."""
    out_dir = Path(out_dir)
    clean = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in result.items()}
    line = "RESULT " + " ".join(f"{k}={v}" for k, v in clean.items())
    if is_writer():
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / name).write_text(json.dumps(clean, indent=2))
        print(line, flush=True)
    return line
