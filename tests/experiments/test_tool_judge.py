"""tool_judge end to end at a reduced size, and on a (2,2,2) mesh of 8 simulated devices
the same GRPO losses as on one device."""

import json

from tests.experiments.test_rl_experiments import MODEL, _run
from tests.experiments.test_tool_grpo import one_device_and_mesh_losses

REDUCED = MODEL + ["sft.steps=2", "eval_problems=8", "rl.steps=2", "rl.prompts_per_step=2",
                   "rl.group_size=2"]


def test_tool_judge_smoke(tmp_path, capsys):
    result, line = _run("tool_judge", REDUCED, tmp_path, capsys)
    assert line.startswith("RESULT acc_sft_tool=")
    for arm in ("tool", "no_tool"):
        for stage in ("sft_", ""):
            for key in ("acc", "acc_right_claims", "acc_wrong_claims", "parsed"):
                assert 0 <= result[f"{key}_{stage}{arm}"] <= 1
    assert result["tool_vs_no_tool"] == round(result["acc_tool"] - result["acc_no_tool"], 4)
    rows = [json.loads(l) for l in (tmp_path / "rl_no_tool.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]
    assert {"reward/mean", "accuracy", "turns/mean"} <= set(rows[-1])
    held_out = [json.loads(l) for l in (tmp_path / "greedy_sft_tool.jsonl").read_text().splitlines()]
    assert len(held_out) == 8 and all("Is the response correct?" in s["prompt"] for s in held_out)
    assert (tmp_path / "rl_curves.png").is_file()


# A warm start that writes parseable verdicts, so GRPO groups have unequal rewards and
# the losses compared are not all zero (after 2 SFT steps every reward is 0).
WARM = MODEL + ["sft.steps=100", "sft.batch_size=16", "sft.optimizer.lr=2e-2", "eval_problems=2",
                "rl.steps=2", "rl.prompts_per_step=2", "rl.group_size=4", "arms=tool"]


def test_tool_judge_on_a_mesh_matches_one_device(tmp_path, capsys):
    one, sharded = one_device_and_mesh_losses("tool_judge", WARM, "tool", tmp_path, capsys)
    assert len(one) == 2 and max(abs(x) for x in one) > 1e-3, one
    for a, b in zip(sharded, one):
        assert abs(a - b) <= 1e-4, (sharded, one)
