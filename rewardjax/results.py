"""The results index: every run's `result.json` under a directory, as one Markdown table.

    python -m rewardjax results runs/ > docs/results.md

The experiment runner (`rewardjax.experiment.main`) writes two files a row is made of:
`result.json`, the figures `run` returned (a `--seeds` run writes their mean, `_min` and
`_max` and the runs in `per_seed`), and `run.json`, where they came from — experiment,
preset, paper, commit, start time, overrides, wall minutes, process count and the
experiment's `HEADLINE` keys. A run made before `run.json` existed still gets its row,
with what its `result.json` holds.

Headline figures: the keys the experiment's module-level `HEADLINE` tuple names, else the
first four numeric figures (`minutes` has its own column). The seed runs of a `--seeds`
run are summarised by its row and get none of their own.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import re
import subprocess
from pathlib import Path
from typing import Any, Mapping

RESULT_FILE = "result.json"
RUN_FILE = "run.json"
NO_RUN_RECORD = "before run.json existed"
_HEADLINE_DEFAULT = 4
_ARXIV = re.compile(r"arXiv:\s*(\d{4}\.\d{4,5})")
# A title quoted at most this far before its arXiv id belongs to it ('"Title" (Authors,
# arXiv:...)'); further away, the quote is some other phrase of the docstring.
_TITLE_REACH = 80


class ResultsError(ValueError):
    """A result.json or run.json that cannot be read into the table."""


def paper_of(docstring: str | None) -> str | None:
    """The paper an experiment reproduces: the first arXiv id in its module docstring,
    as `Title (arXiv:ID)` when the title is quoted just before it, else `arXiv:ID`;
    None when the docstring names no arXiv paper."""
    text = " ".join((docstring or "").split())
    match = _ARXIV.search(text)
    if match is None:
        return None
    arxiv = f"arXiv:{match.group(1)}"
    titles = list(re.finditer(r'"([^"]+)"', text[:match.start()]))
    if titles and match.start() - titles[-1].end() <= _TITLE_REACH:
        return f"{titles[-1].group(1)} ({arxiv})"
    return arxiv


def git_commit(where: str | Path = ".") -> str:
    """`git rev-parse HEAD` of the checkout holding `where`; "unknown" when it is not a
    git checkout or git cannot answer (a record must never stop a run)."""
    try:
        proc = subprocess.run(["git", "-C", str(where), "rev-parse", "HEAD"],
                              capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    commit = proc.stdout.strip()
    return commit if proc.returncode == 0 and commit else "unknown"


@dataclasses.dataclass(frozen=True, kw_only=True)
class Row:
    """One run of the index: `path` is its directory relative to the collected root."""
    path: str
    experiment: str | None
    preset: str | None
    seeds: tuple[int, ...] | None
    paper: str | None
    headline: tuple[tuple[str, str], ...]
    minutes: float | None
    started: str | None
    commit: str


def _read_json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ResultsError(f"{path}: cannot read it as JSON: {err}") from None
    if not isinstance(value, dict):
        raise ResultsError(f"{path}: expected a JSON object of figures, found "
                           f"{type(value).__name__}")
    return value


def is_number(v: Any) -> bool:
    """Whether a RESULT figure is a number (booleans are not)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _file_date(path: Path) -> str:
    return datetime.datetime.fromtimestamp(path.stat().st_mtime).isoformat(timespec="seconds")


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return str(round(v, 4))
    return str(v)


def headline(result: Mapping[str, Any], keys: tuple[str, ...] | list[str] | None = None
             ) -> tuple[tuple[str, str], ...]:
    """(name, text) of a result's headline figures: those of `keys` the result has, else
    (no keys, or none present) the first four numeric figures other than `minutes`. A `--seeds` aggregate's
    figure reads `mean [min, max]`."""
    aggregate = "per_seed" in result
    names = [k for k in keys if k in result] if keys else []
    if not names:
        names = [k for k, v in result.items()
                 if is_number(v) and k != "minutes"
                 and not (aggregate and (k.endswith(("_min", "_max")) or k == "seeds"))]
        names = names[:_HEADLINE_DEFAULT]
    figures = []
    for k in names:
        text = _fmt(result[k])
        if aggregate and f"{k}_min" in result and f"{k}_max" in result:
            text += f" [{_fmt(result[f'{k}_min'])}, {_fmt(result[f'{k}_max'])}]"
        figures.append((k, text))
    return tuple(figures)


def read_row(run_dir: Path, root: Path) -> Row:
    """The row of the run whose `result.json` is in `run_dir`."""
    result = _read_json(run_dir / RESULT_FILE)
    record = _read_json(run_dir / RUN_FILE) if (run_dir / RUN_FILE).exists() else None
    seeds = result.get("seeds") if "per_seed" in result else None
    minutes = record.get("minutes") if record else None
    if not is_number(minutes):
        minutes = result.get("minutes")
    return Row(path=run_dir.relative_to(root).as_posix(),
               experiment=record.get("experiment") if record else None,
               preset=record.get("preset") if record else None,
               seeds=tuple(seeds) if seeds else None,
               paper=record.get("paper") if record else None,
               headline=headline(result, record.get("headline") if record else None),
               minutes=minutes if is_number(minutes) else None,
               started=record.get("started") if record else _file_date(run_dir / RESULT_FILE),
               commit=str(record.get("commit") or "unknown") if record else NO_RUN_RECORD)


def collect(root: str | Path) -> list[Row]:
    """Rows of every `result.json` under `root`, sorted by experiment, preset and path;
    the `seed<k>/` runs of a `--seeds` run are left to its aggregate row."""
    root = Path(root)
    if not root.is_dir():
        raise ResultsError(f"results directory {str(root)!r} does not exist or is not a "
                           "directory")
    run_dirs = sorted(p.parent for p in root.rglob(RESULT_FILE))
    aggregates = [d for d in run_dirs if "per_seed" in _read_json(d / RESULT_FILE)]
    rows = [read_row(d, root) for d in run_dirs
            if not any(a in d.parents for a in aggregates)]
    return sorted(rows, key=lambda r: (r.experiment or "~", r.preset or "", r.path))


def _paper_cell(paper: str | None) -> str:
    if not paper:
        return ""
    match = _ARXIV.search(paper)
    if match is None:
        return paper
    # The title before its subtitle keeps the table narrow; the link gives the rest.
    title = paper[:match.start()].strip(" (").split(":")[0].strip() or f"arXiv:{match.group(1)}"
    return f"[{title}](https://arxiv.org/abs/{match.group(1)})"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def format_table(rows: list[Row], *, root: str | Path) -> str:
    """The Markdown page: a title, how it is made, and one table row per run."""
    lines = [
        "# Results",
        "",
        f"One row per run under `{root}` ({len(rows)} runs), made by",
        f"`python -m rewardjax results {root}`. To refresh this page, run the presets (their",
        "default output is `runs/<experiment>-<preset>`), then",
        "`python -m rewardjax results runs/ > docs/results.md`.",
        "",
        "Figures are the run's RESULT line (the experiment's `HEADLINE` figures, else its first",
        "four); a `--seeds` run shows mean [min, max] over its seeds. A row whose run.json is",
        f"missing (\"{NO_RUN_RECORD}\") shows \"?\" for experiment and preset and is dated by",
        "its result.json's file time.",
        "",
        "| experiment | preset | paper | headline figures | minutes | date | commit | directory |",
        "|---|---|---|---|---:|---|---|---|",
    ]
    for r in rows:
        preset = r.preset or "?"
        if r.seeds:
            preset += f" (seeds {','.join(str(s) for s in r.seeds)})"
        figures = ", ".join(f"{k}={v}" for k, v in r.headline)
        minutes = f"{r.minutes:.1f}" if r.minutes is not None else ""
        date = (r.started or "")[:16].replace("T", " ")
        commit = r.commit if r.commit in (NO_RUN_RECORD, "unknown") else r.commit[:10]
        cells = [r.experiment or "?", preset, _paper_cell(r.paper), figures, minutes, date,
                 commit, f"`{r.path}`"]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"

