"""Experiment tracking with the main install (no torch): TensorBoard event files that
tensorboard's own reader loads, a Weights & Biases run written offline, and one line on
stderr for a tracker that is asked for but not installed (issue 13)."""

import json
import os
import pathlib
import subprocess
import sys

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from rewardjax.experiment import apply_overrides
from rewardjax.recipes.rl_arith import RLRecipe
from rewardjax.train import metrics
from rewardjax.train.metrics import LogConfig, MetricsLogger
from tests.experiments.conftest import SMALL, load_experiment

ROOT = pathlib.Path(__file__).parents[2]

# `sys.modules[name] = None` makes import fail as if the package were absent: this test
# environment has torch (and wandb), a main install has neither.
_PRELUDE = "import sys\nfor _name in {blocked!r}:\n    sys.modules[_name] = None\n"


def _run(code: str, tmp_path: pathlib.Path, *, blocked=("torch",), env=None, timeout=120):
    proc = subprocess.run([sys.executable, "-c", _PRELUDE.format(blocked=blocked) + code],
                          capture_output=True, text=True, cwd=tmp_path, timeout=timeout,
                          env={**os.environ, **(env or {})})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _scalars(log_dir: pathlib.Path) -> dict[str, list[tuple[int, float]]]:
    acc = EventAccumulator(str(log_dir))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_logger_writes_tensorboard_events_without_torch(tmp_path):
    proc = _run(f"""
from rewardjax.train.metrics import MetricsLogger
logger = MetricsLogger({str(tmp_path / "run")!r}, name="rl", progress=False)
logger.log(10, {{"loss": 0.5, "reward/mean": 0.25, "kl": float("nan")}})
logger.log(20, {{"loss": 0.375, "reward/mean": 0.5, "kl": 0.125}})
logger.close()
assert sys.modules["torch"] is None, "something imported torch"
assert not any(m.startswith("tensorflow") for m in sys.modules), "TensorFlow was imported"
""", tmp_path)
    assert proc.stderr == ""  # TensorBoard is there: nothing to report
    got = _scalars(tmp_path / "run" / "tb" / "rl")
    assert got == {"loss": [(10, 0.5), (20, 0.375)], "reward/mean": [(10, 0.25), (20, 0.5)],
                   "kl": [(20, 0.125)]}  # a non-finite value is left out, not plotted as 0


def test_requested_but_missing_loggers_print_one_line_each(tmp_path):
    proc = _run(f"""
from rewardjax.train.metrics import LogConfig, MetricsLogger
for name in ("sft", "rl"):  # two stages of one run: still one line per tracker
    logger = MetricsLogger({str(tmp_path / "run")!r}, name=name, progress=False,
                           log=LogConfig(tensorboard=True, wandb=True))
    logger.log(1, {{"loss": 1.0}})
    logger.close()
""", tmp_path, blocked=("torch", "tensorboardX", "wandb"))
    lines = proc.stderr.splitlines()
    assert len(lines) == 2, lines
    tb_line, wandb_line = sorted(lines)
    assert "TensorBoard" in tb_line and "pip install tensorboardX" in tb_line
    assert "wandb" in wandb_line and "pip install 'rewardjax[wandb]'" in wandb_line
    run = tmp_path / "run"
    assert sorted(p.name for p in run.iterdir()) == ["rl.jsonl", "sft.jsonl"]


def test_log_config_is_validated_and_settable_from_the_command_line():
    with pytest.raises(TypeError, match=r"LogConfig.wandb must be a bool, got 'yes'"):
        LogConfig(wandb="yes")
    with pytest.raises(ValueError, match=r"LogConfig.wandb_project .* got 'team/rm'"):
        LogConfig(wandb_project="team/rm")
    with pytest.raises(TypeError, match=r"MetricsLogger log must be a LogConfig, got dict"):
        MetricsLogger("unused", log={"wandb": True})
    bt = load_experiment("bradley_terry_rm")
    for config in (bt.PRESETS["tiny"], RLRecipe()):
        assert config.log == LogConfig()
        assert apply_overrides(config, ["log.wandb=true"]).log == LogConfig(wandb=True)


def test_only_process_zero_writes(tmp_path, monkeypatch):
    monkeypatch.setattr(metrics, "is_writer", lambda: False)
    logger = MetricsLogger(tmp_path / "run", progress=False, log=LogConfig(wandb=True))
    assert logger.log(3, {"loss": 2.0}) == {"step": 3, "loss": 2.0}
    logger.close()
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_experiment_writes_tensorboard_and_an_offline_wandb_run_without_torch(tmp_path):
    out = tmp_path / "bt"
    argv = [str(ROOT / "experiments" / "bradley_terry_rm.py"), "--out", str(out)]
    for item in SMALL + ["sft.steps=0", "steps=2", "eval_every=2", "num_train=16",
                         "batch_size=8", "num_test=8", "buckets=96", "log.wandb=true"]:
        argv += ["--set", item]
    # One CPU device as a user runs it; wandb keeps its settings and cache in tmp_path.
    env = {"XLA_FLAGS": os.environ.get("XLA_FLAGS", "").replace(
               "--xla_force_host_platform_device_count=8", "").strip(),
           "WANDB_MODE": "offline", "WANDB_CONFIG_DIR": str(tmp_path / "wandb_config"),
           "WANDB_CACHE_DIR": str(tmp_path / "wandb_cache"),
           "WANDB_DATA_DIR": str(tmp_path / "wandb_data")}
    proc = _run(f"""
import runpy
sys.argv = {argv!r}
runpy.run_path(sys.argv[0], run_name="__main__")
""", tmp_path, env=env, timeout=300)
    assert "unavailable" not in proc.stderr
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in rows if "loss" in r][-1]
    evals = [r for r in rows if "eval/accuracy" in r][-1]
    got = _scalars(out / "tb" / "metrics")
    assert got["loss"][-1][0] == train["step"] == 2
    assert got["loss"][-1][1] == pytest.approx(train["loss"], rel=1e-6)  # float32 on disk
    assert got["eval/accuracy"] == [(2, pytest.approx(evals["eval/accuracy"], rel=1e-6))]
    runs = list((out / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, sorted(p.name for p in (out / "wandb").iterdir())
    (record,) = runs[0].glob("run-*.wandb")
    # wandb-core keeps offline runs in its own binary log; metric names, values and the
    # experiment's config (from config.json) are stored as text inside it.
    data = record.read_bytes()
    assert b"loss/bt" in data and b"eval/accuracy" in data and b"num_train" in data
