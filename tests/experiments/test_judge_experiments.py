"""The generative-judge experiments (issue 15) end to end at their smoke size, and
every preset loads, names its paper and runs on a mesh config."""

import json

import pytest

from tests.experiments.conftest import load_experiment

NAMES = ("rm_r1", "master_key", "think_prm")


@pytest.mark.parametrize("name", NAMES)
def test_presets_load_and_name_their_paper(name):
    module = load_experiment(name)
    assert {"tiny", "smoke", "paper"} <= set(module.PRESETS)
    assert "arXiv:" in module.__doc__ and "tiny" in module.__doc__
    for preset in module.PRESETS.values():
        assert preset.mesh is not None
    assert set(module.HEADLINE) <= set(_figures(name))


def _figures(name):
    return {"rm_r1": ("accuracy_sft", "accuracy_grpo", "gain", "parse_failures_sft",
                      "parse_failures_grpo", "position_bias_sft", "position_bias_grpo",
                      "unworked_sft", "unworked_grpo"),
            "master_key": ("fpr_defended", "fpr_undefended", "accuracy_defended",
                           "accuracy_undefended"),
            "think_prm": ("f1", "error_accuracy", "correct_accuracy", "parse_failures")}[name]


def _smoke(name, tmp_path, capsys, overrides=()):
    module = load_experiment(name)
    argv = ["--preset", "smoke", "--out", str(tmp_path)]
    for item in overrides:
        argv += ["--set", item]
    result = module.experiment.main(module.PRESETS, module.run, argv=argv)
    lines = [l for l in capsys.readouterr().out.splitlines() if l.startswith("RESULT ")]
    assert len(lines) == 1, "expected exactly one RESULT line"
    assert json.loads((tmp_path / "result.json").read_text()) == result
    assert set(_figures(name)) <= set(result)
    assert list(tmp_path.glob("*.png")), "no plot written"
    return result


def test_rm_r1_smoke(tmp_path, capsys):
    # the paper preset's KL anchor (kl_coef 1e-3): the SFT judge is the reference
    result = _smoke("rm_r1", tmp_path, capsys, overrides=("rl.kl_coef=0.001",))
    assert 0 <= result["accuracy_sft"] <= 1 and 0 <= result["accuracy_grpo"] <= 1
    # 8 pairs x 2 orders: every judgment is a vote or a counted parse failure.
    assert 0 <= result["parse_failures_grpo"] <= 16
    rows = [json.loads(l) for l in (tmp_path / "rl.jsonl").read_text().splitlines()]
    assert {"reward/verdict/mean", "reward/format/mean", "accuracy"} <= set(rows[-1])


def test_master_key_smoke(tmp_path, capsys):
    result = _smoke("master_key", tmp_path, capsys)
    assert 0 <= result["fpr_defended"] <= 1 and 0 <= result["fpr_undefended"] <= 1
    per_key = json.loads((tmp_path / "fpr_per_key.json").read_text())
    assert set(per_key) == {"defended", "undefended"} and len(per_key["defended"]) == 10


def test_think_prm_smoke(tmp_path, capsys):
    result = _smoke("think_prm", tmp_path, capsys)
    assert 0 <= result["f1"] <= 1 and 0 <= result["parse_failures"] <= 8
