import dataclasses
import datetime
import json
import pathlib
import re
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


def test_run_json_records_where_the_figures_came_from(tmp_path):
    experiment.main({"tiny": Outer()}, lambda config, out: {"ok": 1},
                    description='"A Paper Title" (arXiv:2101.00001)',
                    argv=["--out", str(tmp_path), "--set", "inner.steps=2", "flag=true"])
    record = json.loads((tmp_path / "run.json").read_text())
    assert record["experiment"] == "test_experiment" and record["preset"] == "tiny"
    assert record["paper"] == "A Paper Title (arXiv:2101.00001)"
    assert record["overrides"] == ["inner.steps=2", "flag=true"]
    assert record["processes"] == 1 and isinstance(record["minutes"], float)
    assert re.fullmatch(r"[0-9a-f]{40}|unknown", record["commit"])
    assert datetime.datetime.fromisoformat(record["started"]).tzinfo is not None
    assert not (tmp_path / "seed0").exists()


@dataclasses.dataclass(frozen=True, kw_only=True)
class Seeded:
    seed: int = 7
    inner: Inner = Inner()


def _seeded_run(calls):
    def run(config, out):
        calls.append((config.seed, config.inner.steps, out))
        print(f"RESULT accuracy={0.5 + config.seed / 10}")
        return {"accuracy": 0.5 + config.seed / 10, "steps": config.inner.steps,
                "label": f"s{config.seed}", "ok": True}
    return run


def test_seeds_run_once_per_seed_and_report_mean_and_range(tmp_path, capsys):
    calls = []
    summary = experiment.main({"tiny": Seeded()}, _seeded_run(calls),
                              argv=["--out", str(tmp_path), "--seeds", "0,1,3",
                                    "--set", "inner.steps=4"])
    assert calls == [(k, 4, tmp_path / f"seed{k}") for k in (0, 1, 3)]
    for k in (0, 1, 3):
        assert json.loads((tmp_path / f"seed{k}" / "config.json").read_text())["seed"] == k
        assert json.loads((tmp_path / f"seed{k}" / "run.json").read_text())["seed"] == k
    assert json.loads((tmp_path / "config.json").read_text())["seed"] == 7
    assert json.loads((tmp_path / "run.json").read_text())["seeds"] == [0, 1, 3]
    lines = [l for l in capsys.readouterr().out.splitlines() if l.startswith("RESULT ")]
    # Bools and strings are not figures to average; they stay in per_seed.
    assert lines[-1] == ("RESULT accuracy=0.6333 accuracy_min=0.5 accuracy_max=0.8 "
                         "steps=4.0 steps_min=4.0 steps_max=4.0")
    assert len(lines) == 4
    assert json.loads((tmp_path / "result.json").read_text()) == summary
    assert summary["seeds"] == [0, 1, 3]
    assert summary["per_seed"][2] == {"seed": 3, "accuracy": 0.8, "steps": 4, "label": "s3",
                                      "ok": True}


def test_seeds_summary_refuses_figures_named_like_its_range_keys():
    with pytest.raises(ValueError, match=r"\['loss_min'\]"):
        experiment.seed_summary([0, 1], [{"loss": 1.0, "loss_min": 0.5}] * 2)


def test_seeds_without_a_seed_field_exit_2_naming_it(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        experiment.main({"tiny": Outer()}, _unused_run, argv=["--out", str(tmp_path),
                                                              "--seeds", "0,1"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "--seeds sets the config's top-level field 'seed', but Outer has none;" in err
    assert "Traceback" not in err


@dataclasses.dataclass(frozen=True, kw_only=True)
class NestedSeed:
    base: Seeded = Seeded()


def test_seeds_error_points_at_a_nested_seed(tmp_path, capsys):
    with pytest.raises(SystemExit):
        experiment.main({"tiny": NestedSeed()}, _unused_run, argv=["--out", str(tmp_path),
                                                                   "--seeds", "0,1"])
    assert ("NestedSeed has none (it has base.seed: run once per value with --set base.seed=K)"
            in capsys.readouterr().err)


@pytest.mark.parametrize("seeds,message", [("0,x", "comma-separated integers"),
                                           ("1,1", "a seed is repeated"),
                                           (",", "at least one seed")])
def test_malformed_seeds_exit_2(seeds, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        experiment.main({"tiny": Seeded()}, _unused_run, argv=["--out", str(tmp_path),
                                                               "--seeds", seeds])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err
