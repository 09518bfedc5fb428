"""The policy-optimization experiments end to end at a reduced size (their presets are
checked in test_experiments.py)."""

import json

import pytest

from tests.experiments.conftest import load_experiment

RL_NAMES = ("grpo_arith", "dr_grpo", "dapo", "ppo_arith", "tina_lora_grpo")

# A one-layer model, 2 SFT steps, 2 RL steps of 2 prompts x 2 samples, 8 held-out problems.
MODEL = ["model.hidden_size=32", "model.intermediate_size=64", "model.num_layers=1",
         "model.num_heads=2", "model.num_kv_heads=1"]
RL = ["sft.steps=2", "eval_problems=8", "rl.steps=2", "rl.prompts_per_step=2",
      "rl.group_size=2", "rl.max_new_tokens=8", "rl.minibatches=1", "rl.micro_batches=1",
      "rl.max_sampling_rounds=2"]


def _run(name, overrides, tmp_path, capsys) -> tuple[dict, str]:
    module = load_experiment(name)
    argv = ["--preset", "tiny", "--out", str(tmp_path)]
    for item in overrides:
        argv += ["--set", item]
    result = module.experiment.main(module.PRESETS, module.run, argv=argv)
    lines = [l for l in capsys.readouterr().out.splitlines() if l.startswith("RESULT ")]
    assert len(lines) == 1, "expected exactly one RESULT line"
    assert json.loads((tmp_path / "result.json").read_text()) == result
    return result, lines[0]


@pytest.mark.parametrize("name", RL_NAMES)
def test_rl_experiment_smoke(name, tmp_path, capsys):
    extra = ["overlong_buffer=4"] if name == "dapo" else []  # must fit in max_new_tokens
    result, line = _run(name, MODEL + RL + extra, tmp_path, capsys)
    assert line.startswith("RESULT pass1_before=")
    assert 0 <= result["pass1_before"] <= 1 and 0 <= result["pass1_after"] <= 1
    rows = [json.loads(l) for l in (tmp_path / "rl.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]
    assert {"reward/mean", "accuracy", "entropy", "response/length"} <= set(rows[-1])
    assert (tmp_path / "rl_curves.png").is_file()


def test_dpo_experiment_smoke(tmp_path, capsys):
    overrides = ["base." + o for o in MODEL] + [
        "base.sft.steps=2", "base.eval_problems=8", "steps=2", "batch_size=4",
        "eval_pairs=8", "max_new_tokens=8", "optimizer.warmup_steps=0",
        "optimizer.total_steps=2"]
    result, line = _run("dpo_arith", overrides, tmp_path, capsys)
    assert line.startswith("RESULT ")
    assert 0 <= result["pass1_after"] <= 1
