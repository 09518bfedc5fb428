"""text_to_sql end to end at a reduced size (queries run in the sandbox), and on a
(2,2,2) mesh of 8 simulated devices the same RL losses as on one device."""

import json

from tests.experiments.test_rl_experiments import MODEL, _run
from tests.experiments.test_tool_grpo import one_device_and_mesh_losses

REDUCED = MODEL + ["sft.steps=2", "eval_questions=4", "rl.steps=2", "rl.prompts_per_step=2",
                   "rl.group_size=2"]


def test_text_to_sql_smoke(tmp_path, capsys):
    result, line = _run("text_to_sql", REDUCED, tmp_path, capsys)
    assert line.startswith("RESULT ex_sft=")
    for key in ("ex_sft", "ex_partial", "ex_execution", "syntax_sft", "syntax_partial"):
        assert 0 <= result[key] <= 1
    assert result["partial_vs_execution"] == round(result["ex_partial"] - result["ex_execution"], 4)
    rows = [json.loads(l) for l in (tmp_path / "rl_partial.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]
    assert {"reward/mean", "accuracy", "env/syntax", "env/schema"} <= set(rows[-1])
    held_out = [json.loads(l) for l in (tmp_path / "greedy_rl_partial.jsonl").read_text()
                .splitlines()]
    assert len(held_out) == 4 and all(s["answer"].startswith("SELECT ") for s in held_out)
    assert (tmp_path / "rl_curves.png").is_file()


def test_text_to_sql_on_a_mesh_matches_one_device(tmp_path, capsys):
    one, sharded = one_device_and_mesh_losses("text_to_sql", REDUCED + ["arms=partial"],
                                              "partial", tmp_path, capsys)
    assert len(one) == 2
    for a, b in zip(sharded, one):
        assert abs(a - b) <= 1e-4, (sharded, one)
