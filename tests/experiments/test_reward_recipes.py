"""The reward-design experiments (issue 16) end to end at their smoke size: every arm
runs from one warm start and the RESULT line carries each arm's figures."""

import json

import pytest

from tests.experiments.conftest import load_experiment

EXPECTED = {
    "prime": {"rloo_pass1", "prime_pass1", "rloo_steps_to_final", "prime_steps_to_final"},
    "drpo": {"grpo_pass1", "naive_pass1", "drpo_pass1", "drpo_length_cut", "naive_length_cut"},
    "noisy_rewards": {"pass1_p00", "pass1_p50"},
    "rlpr": {"grpo_pass1", "rlpr_pass1", "loglik_pass1", "rlpr_gain"},
    "posterior_grpo": {"grpo_pass1", "ungated_pass1", "gated_pass1"},
    "pure": {"grpo_pass1", "sum_pass1", "min_pass1", "min_vr_pass1", "sum_process_reward_last"},
    "pav": {"grpo_pass1", "pav_pass1", "grpo_pass1_mean", "pav_pass1_mean", "pav_beats_grpo"},
    "laser": {"grpo_auroc", "laser_auroc", "grpo_pass1", "laser_pass1", "c_ref",
              "laser_weighted_vote", "laser_majority_vote"},
    "guide": {"grpo_hard_pass1", "guide_hard_pass1", "grpo_pass1", "guide_pass1",
              "hard_pass1_before"},
}
# a metric the recipe arm logs only when its extension point is in use
USED = {"pav": "pav/prefixes", "laser": "loss/aux", "guide": "guide/groups"}


def _smoke(name, tmp_path, capsys):
    module = load_experiment(name)
    result = module.experiment.main(module.PRESETS, module.run,
                                    argv=["--preset", "smoke", "--out", str(tmp_path)])
    lines = [l for l in capsys.readouterr().out.splitlines() if l.startswith("RESULT ")]
    assert len(lines) == 1, "expected exactly one RESULT line"
    assert json.loads((tmp_path / "result.json").read_text()) == result
    assert (tmp_path / "rl_curves.png").is_file()
    return module, result


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_reward_recipe_smoke(name, tmp_path, capsys):
    module, result = _smoke(name, tmp_path, capsys)
    assert EXPECTED[name] <= set(result), set(result)
    assert 0 <= result["pass1_before"] <= 1
    assert {"tiny", "paper", "smoke"} <= set(module.PRESETS)
    assert "arXiv:" in module.__doc__ and "tiny" in module.__doc__
    if name in USED:  # the recipe arm ran with its extension in use, every step
        rows = [json.loads(l) for l in (tmp_path / f"rl_{name}.jsonl").read_text().splitlines()]
        assert len(rows) == module.PRESETS["smoke"].recipe.rl.steps
        assert all(USED[name] in row for row in rows), rows[0].keys()


def test_guide_hint_is_the_first_step_or_the_records_own():
    guide = load_experiment("guide")
    q = "Start with 12. Subtract 5. Add 3. What is the result?"
    assert guide.first_step_hint({"prompt": q}) == q + "\nHint: 12 - 5 = 7"
    assert guide.first_step_hint({"prompt": "Why?", "hint": "look"}) == "Why?\nHint: look"
    with pytest.raises(ValueError, match="no `hint` field and its prompt is not an arithmetic"):
        guide.first_step_hint({"prompt": "Why?"})
