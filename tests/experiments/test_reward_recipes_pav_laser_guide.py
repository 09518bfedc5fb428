"""PAV, LaSeR and Guide (issue 16) end to end at their smoke size: both arms run from
one warm start and the RESULT line carries each arm's figures."""

import json

import pytest

from tests.experiments.test_reward_recipes import _smoke

EXPECTED = {
    "pav": {"grpo_pass1", "pav_pass1", "grpo_pass1_mean", "pav_pass1_mean", "pav_beats_grpo"},
    "laser": {"grpo_auroc", "laser_auroc", "grpo_pass1", "laser_pass1", "c_ref",
              "laser_weighted_vote", "laser_majority_vote"},
    "guide": {"grpo_hard_pass1", "guide_hard_pass1", "grpo_pass1", "guide_pass1",
              "hard_pass1_before"},
}
USED = {"pav": "pav/prefixes", "laser": "loss/aux", "guide": "guide/groups"}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_smoke(name, tmp_path, capsys):
    module, result = _smoke(name, tmp_path, capsys)
    assert EXPECTED[name] <= set(result), set(result)
    assert 0 <= result["pass1_before"] <= 1
    assert {"tiny", "paper", "smoke"} <= set(module.PRESETS)
    assert "arXiv:" in module.__doc__ and "tiny" in module.__doc__
    # the recipe arm ran with its extension in use, every step
    rows = [json.loads(l) for l in (tmp_path / f"rl_{name}.jsonl").read_text().splitlines()]
    assert len(rows) == module.PRESETS["smoke"].recipe.rl.steps
    assert all(USED[name] in row for row in rows), rows[0].keys()


def test_guide_hint_is_the_first_step_or_the_records_own():
    from tests.experiments.conftest import load_experiment  # noqa: PLC0415
    guide = load_experiment("guide")
    q = "Start with 12. Subtract 5. Add 3. What is the result?"
    assert guide.first_step_hint({"prompt": q}) == q + "\nHint: 12 - 5 = 7"
    assert guide.first_step_hint({"prompt": "Why?", "hint": "look"}) == "Why?\nHint: look"
    with pytest.raises(ValueError, match="no `hint` field and its prompt is not an arithmetic"):
        guide.first_step_hint({"prompt": "Why?"})
