"""judge_reward_grpo end to end at a reduced size (GRM judge, the preset's), and with the
pointwise judge on a (2,2,2) mesh of 8 simulated devices the same GRPO losses (judge
reward) as on one device."""

import json

from tests.experiments.test_rl_experiments import MODEL, RL, _run

REDUCED = ([f"recipe.{o}" for o in MODEL + RL]
           + ["judge_prompts=4", "judge_samples=2", "judge_test_prompts=4",
              "judge_sft.steps=2", "judge_sft.optimizer.total_steps=2",
              "judge_batch_size=8", "judge_max_new_tokens=16"])


def test_judge_reward_grpo_smoke(tmp_path, capsys):
    result, line = _run("judge_reward_grpo", REDUCED + ["arms=judge,answer"], tmp_path, capsys)
    assert line.startswith("RESULT pass1_sft=")
    for key in ("pass1_sft", "pass1_judge", "pass1_answer", "judge_accuracy",
                "judge_accuracy_correct", "judge_accuracy_wrong", "judge_train_positive",
                "judge_parse_failures", "judge_rl_parse_failures"):
        assert 0 <= result[key] <= 1, key
    assert result["gain_judge"] == round(result["pass1_judge"] - result["pass1_sft"], 4)
    rows = [json.loads(l) for l in (tmp_path / "rl_judge.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]
    # the judge's p(Yes) is the whole reward; the checker is logged with weight 0
    assert {"reward/judge/mean", "reward/answer/mean", "accuracy"} <= set(rows[-1])
    assert all(0 <= r["reward/judge/mean"] <= 1 for r in rows)
    assert all(abs(r["reward/total/mean"] - r["reward/judge/mean"]) < 1e-6 for r in rows)
    assert (tmp_path / "rl_curves.png").is_file()


def _rows(path):
    return [json.loads(l) for l in (path / "rl_judge.jsonl").read_text().splitlines()]


def test_judge_reward_grpo_on_a_mesh_matches_one_device(tmp_path, capsys):
    args = REDUCED + ["arms=judge", "judge_kind=pointwise"]
    _run("judge_reward_grpo", args, tmp_path / "one", capsys)
    _run("judge_reward_grpo", args + ["mesh.data=2", "mesh.fsdp=2", "mesh.tensor=2"],
         tmp_path / "mesh", capsys)
    one, sharded = _rows(tmp_path / "one"), _rows(tmp_path / "mesh")
    assert len(one) == len(sharded) == 2
    # After 2 SFT steps p(Yes) is ~1e-4 everywhere: GRPO's group-normalized loss is ~0
    # whatever the devices, so the gradient norm (not 0: the std-scaled advantages are
    # O(1)) and the judge's mean reward are compared as well as the loss.
    for a, b in zip(sharded, one):
        assert b["grad_norm"] > 1e-2, one
        assert abs(a["loss"] - b["loss"]) <= 1e-4, (sharded, one)
        assert abs(a["grad_norm"] - b["grad_norm"]) <= 1e-3 * b["grad_norm"], (sharded, one)
        assert abs(a["reward/judge/mean"] - b["reward/judge/mean"]) <= 1e-6, (sharded, one)
