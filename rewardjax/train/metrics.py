"""Metrics: a progress bar on the terminal, a JSONL file, experiment trackers, and a plot
of the curves at the end.

The trackers are asked for with `LogConfig`: TensorBoard event files (on by default,
written by tensorboardX, which needs neither torch nor TensorFlow) and Weights & Biases
(the `wandb` extra; `WANDB_MODE=offline` keeps the run on disk, no network). A tracker
that is asked for but not installed is named once on stderr and the run goes on.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
from pathlib import Path
from typing import Mapping

import numpy as np

# Characters W&B refuses in a project name.
_WANDB_PROJECT_FORBIDDEN = "/\\#?%:"
_reported_unavailable: set[str] = set()


def _scalar(v) -> float:
    return float(np.asarray(v))


def is_writer() -> bool:
    """Whether this process writes logs, plots and results: process 0 of a multi-host
    run (every process computes the same figures; one copy is kept)."""
    import jax
    return jax.process_index() == 0


@dataclasses.dataclass(frozen=True, kw_only=True)
class LogConfig:
    """Which experiment trackers receive the metrics (the JSONL file is always written).

    Attributes:
      tensorboard: event files under `<out_dir>/tb/<name>` (tensorboardX, no torch).
      wandb: a Weights & Biases run under `<out_dir>/wandb` (`pip install 'rewardjax[wandb]'`;
        set `WANDB_MODE=offline` to log without network or account).
      wandb_project: the W&B project the runs go to.
    """

    tensorboard: bool = True
    wandb: bool = False
    wandb_project: str = "rewardjax"

    def __post_init__(self):
        for name in ("tensorboard", "wandb"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"LogConfig.{name} must be a bool, got "
                                f"{getattr(self, name)!r}")
        project = self.wandb_project
        if not isinstance(project, str) or not project.strip() or any(
                c in project for c in _WANDB_PROJECT_FORBIDDEN):
            raise ValueError(f"LogConfig.wandb_project must be a non-empty name without any of "
                             f"{_WANDB_PROJECT_FORBIDDEN!r}, got {project!r}")


def _unavailable(logger: str, reason: str) -> None:
    # One line per tracker and process: a run opens a logger per stage.
    if logger in _reported_unavailable:
        return
    _reported_unavailable.add(logger)
    print(f"[metrics] {logger} logging was requested but is unavailable: {reason}; "
          "continuing without it", file=sys.stderr, flush=True)


def _tensorboard_writer(log_dir: Path):
    try:
        from tensorboardX import SummaryWriter
    except ImportError:
        _unavailable("TensorBoard", "tensorboardX is not installed (pip install tensorboardX)")
        return None
    return SummaryWriter(str(log_dir))


def _wandb_run(out_dir: Path, name: str, project: str):
    try:
        import wandb
    except ImportError:
        _unavailable("wandb", "the wandb package is not installed "
                              "(pip install 'rewardjax[wandb]')")
        return None
    config_path = out_dir / "config.json"  # written by `experiment.main`
    config = json.loads(config_path.read_text()) if config_path.is_file() else None
    # One run per logger (a logger per training stage), grouped by the output directory;
    # "create_new" keeps wandb from handing back a run that is still open.
    return wandb.init(project=project, dir=str(out_dir), group=out_dir.name, job_type=name,
                      name=f"{out_dir.name}/{name}", config=config, reinit="create_new")


class MetricsLogger:
    """Reads device metrics once per call (one host sync per log interval). Only
    process 0 writes (`is_writer`); the others compute and return the rows.

    Args:
      log: the trackers to write to besides the JSONL file (default `LogConfig()`:
        TensorBoard only).
      tensorboard: False leaves TensorBoard off whatever `log` asks.
    """

    def __init__(self, out_dir: str | os.PathLike, *, total_steps: int | None = None,
                 name: str = "metrics", progress: bool = True, tensorboard: bool = True,
                 initial_step: int = 0, log: LogConfig | None = None):
        log = LogConfig() if log is None else log
        if not isinstance(log, LogConfig):
            raise TypeError(f"MetricsLogger log must be a LogConfig, got {type(log).__name__}")
        self.out_dir = Path(out_dir)
        self.path = self.out_dir / f"{name}.jsonl"
        self._file = self._bar = self._tb = self._wandb = None
        if not is_writer():
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "a")
        if progress:
            from tqdm.auto import tqdm
            self._bar = tqdm(total=total_steps, initial=initial_step, dynamic_ncols=True,
                             desc=name, mininterval=1.0)
        if tensorboard and log.tensorboard:
            # One TensorBoard run per stage, so the SFT and main stages' curves do not
            # interleave on the same tags.
            self._tb = _tensorboard_writer(self.out_dir / "tb" / name)
        if log.wandb:
            self._wandb = _wandb_run(self.out_dir, name, log.wandb_project)

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
            self._tb.flush()
        if self._wandb is not None:
            self._wandb.log({k: v for k, v in row.items() if k != "step"}, step=int(step))
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
        if self._wandb is not None:
            self._wandb.finish()


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
