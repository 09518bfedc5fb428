"""search_agent end to end at a reduced size, and on a (2,2,2) mesh of 8 simulated devices
the same GRPO losses as on one device."""

import json
import shutil

from tests.experiments.test_rl_experiments import MODEL, _run
from tests.experiments.test_tool_grpo import _losses

SPLITS = 'splits=[["sft", 64], ["rl", 16], ["test", 8]]'
REDUCED = MODEL + ["sft.steps=2", SPLITS, "rl.steps=2", "rl.prompts_per_step=2",
                   "rl.group_size=2"]


def test_search_agent_smoke(tmp_path, capsys):
    result, line = _run("search_agent", REDUCED, tmp_path, capsys)
    assert line.startswith("RESULT em_sft_search=")
    for key in ("em_sft_search", "em_search", "em_sft_no_search", "em_no_search",
                "hit_sft_search", "hit_search"):
        assert 0 <= result[key] <= 2, key  # hits are summed per rollout (max_calls = 2)
    assert result["search_vs_no_search"] == round(result["em_search"] - result["em_no_search"], 4)
    assert result["test_questions"] == 8
    rows = [json.loads(l) for l in (tmp_path / "rl_search.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]
    assert {"reward/mean", "accuracy", "turns/mean"} <= set(rows[-1])
    held_out = [json.loads(l) for l in
                (tmp_path / "greedy_sft_search.jsonl").read_text().splitlines()]
    assert len(held_out) == 8 and all(s["prompt"].startswith("What is the ") for s in held_out)
    assert (tmp_path / "rl_curves.png").is_file()


# A warm start that searches and answers, so GRPO groups have unequal rewards and the
# losses compared are not all zero.
WARM = MODEL + ["sft.steps=150", "sft.batch_size=16", "sft.optimizer.lr=2e-2",
                "search_fraction=1.0", SPLITS, "rl.steps=2", "rl.prompts_per_step=4",
                "rl.group_size=4", "arms=search"]


def test_search_agent_on_a_mesh_matches_one_device(tmp_path, capsys):
    # The mesh run resumes the one-device run's SFT checkpoint: 150 SFT steps at a high
    # lr amplify the mesh's rounding enough to flip a temperature-1 sample
    # (docs/experiments/grpo_arith.md), and the RL step is what is compared here.
    _run("search_agent", WARM, tmp_path / "one", capsys)
    shutil.copytree(tmp_path / "one" / "checkpoints", tmp_path / "mesh" / "checkpoints")
    _run("search_agent", WARM + ["mesh.data=2", "mesh.fsdp=2", "mesh.tensor=2"],
         tmp_path / "mesh", capsys)
    one, sharded = _losses(tmp_path / "one", "search"), _losses(tmp_path / "mesh", "search")
    assert len(one) == 2 and max(abs(x) for x in one) > 1e-3, one
    for a, b in zip(sharded, one):
        assert abs(a - b) <= 1e-4, (sharded, one)
