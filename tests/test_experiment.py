import dataclasses
import pathlib
import subprocess
import sys

import pytest

from rewardjax import experiment, models


@dataclasses.dataclass(frozen=True, kw_only=True)
class Inner:
    lr: float = 1e-3
    steps: int = 10
    buckets: tuple[int, ...] = (32, 64)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Outer:
    name: str = "x"
    flag: bool = False
    inner: Inner = Inner()
    limit: int | None = None


def test_overrides_reach_nested_fields_with_types():
    cfg = experiment.apply_overrides(Outer(), ["inner.lr=0.5", "inner.steps=3", "flag=true",
                                               "name=abc", "inner.buckets=16,48", "limit=7"])
    assert cfg == Outer(name="abc", flag=True, inner=Inner(lr=0.5, steps=3, buckets=(16, 48)), limit=7)
    assert experiment.apply_overrides(cfg, ["limit=none"]).limit is None


@pytest.mark.parametrize("item,message", [
    ("inner.nope=1", r"Inner has no field 'nope'"),
    ("inner.steps=abc", r"cannot parse 'abc'"),
    ("flag", r"not of the form key=value"),
    ("flag=maybe", r"expected a boolean"),
])
def test_bad_overrides_are_named(item, message):
    with pytest.raises(ValueError, match=message):
        experiment.apply_overrides(Outer(), [item])


def test_main_runs_preset_and_writes_config(tmp_path):
    seen = {}

    def run(config, out):
        seen["config"], seen["out"] = config, out
        return {"ok": 1}

    result = experiment.main({"tiny": Outer()}, run, argv=["--out", str(tmp_path), "--set", "inner.steps=2"])
    assert result == {"ok": 1} and seen["config"].inner.steps == 2
    assert (tmp_path / "config.json").exists()


@dataclasses.dataclass(frozen=True, kw_only=True)
class Checked:
    steps: int = 1
    model_path: str = "checkpoints/nowhere-model"

    def __post_init__(self):
        if self.steps <= 0:
            raise ValueError(f"Checked.steps must be > 0, got {self.steps}")


def _main(run, argv, tmp_path):
    return experiment.main({"tiny": Checked()}, run, argv=["--out", str(tmp_path), *argv])


def _unused_run(config, out):
    raise AssertionError("run must not start after a bad override")


@pytest.mark.parametrize("argv,message", [
    (["--set", "stepz=3"], "override 'stepz': Checked has no field 'stepz'"),
    (["--set", "steps=abc"], "override 'steps': cannot parse 'abc'"),
    (["--set", "steps=none"], "override 'steps': cannot parse 'none': the field is int"),
    (["--set", "steps=0"], "override 'steps=0': Checked.steps must be > 0, got 0"),
    (["--set", "steps"], "override 'steps' is not of the form key=value"),
])
def test_bad_override_exits_2_with_one_line(argv, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        _main(_unused_run, argv, tmp_path)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err == f"[test_experiment] error: {err.split('error: ', 1)[1]}"
    assert message in err and "Traceback" not in err and err.count("\n") == 1


def test_debug_shows_the_traceback_instead(tmp_path):
    with pytest.raises(experiment.UserInputError, match="has no field 'stepz'"):
        _main(_unused_run, ["--debug", "--set", "stepz=3"], tmp_path)


def _raises(err):
    def run(config, out):
        raise err
    return run


@pytest.mark.parametrize("err", [
    FileNotFoundError("backbone.hf_path 'checkpoints/nowhere-model' is not a directory"),
    FileNotFoundError(2, "No such file or directory", "checkpoints/nowhere-model/config.json"),
    models.ConfigError("num_heads = 3 does not divide hidden_size = 32"),
    models.CheckpointError("checkpoints/nowhere-model: no config.json"),
])
def test_input_errors_from_run_exit_2(err, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        _main(_raises(err), [], tmp_path)
    assert exit_info.value.code == 2
    err_text = capsys.readouterr().err
    assert err_text.startswith("[test_experiment] error: ") and "Traceback" not in err_text
    with pytest.raises(type(err)):
        _main(_raises(err), ["--debug"], tmp_path)


@pytest.mark.parametrize("err", [
    FileNotFoundError("runs/x/metrics.jsonl does not exist"),  # a file the config does not name
    ValueError("shapes (3,) and (4,) do not match"),
    KeyError("params"),
])
def test_bugs_in_run_keep_their_traceback(err, tmp_path):
    with pytest.raises(type(err)):
        _main(_raises(err), [], tmp_path)


@pytest.mark.slow
def test_paper_preset_without_its_checkpoint_exits_2(tmp_path):
    # The real command line: the paper preset's checkpoint directory is not on this machine.
    script = pathlib.Path(__file__).parents[1] / "experiments" / "grpo_arith.py"
    proc = subprocess.run([sys.executable, str(script), "--preset", "paper", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("[grpo_arith] error: ") or "\n[grpo_arith] error: " in proc.stderr
    assert "deepseek-math-7b-instruct" in proc.stderr
