"""experiments/deepseek_grm.py end to end at its smoke size: one RESULT line equal to
result.json, the scaling plot and curve, every held-out judgment dumped; the presets
load and name their paper."""

import json

import numpy as np

from tests.experiments.conftest import load_experiment

FIGURES = ("accuracy_k1", "accuracy_voting", "accuracy_meta_voting",
           "accuracy_meta_voting_coin", "gain_voting",
           "gain_meta", "k", "k_meta", "sample_agreement", "meta_auroc", "parse_failures",
           "meta_auroc_within", "ties_voting", "ties_meta_voting")


def test_presets_load_and_name_their_paper():
    module = load_experiment("deepseek_grm")
    assert {"tiny", "smoke", "paper"} <= set(module.PRESETS)
    assert "arXiv:2504.02495" in module.__doc__ and "tiny" in module.__doc__
    assert set(module.HEADLINE) <= set(FIGURES)
    for preset in module.PRESETS.values():
        assert preset.mesh is not None and preset.k in preset.ks


def test_deepseek_grm_smoke(tmp_path, capsys):
    module = load_experiment("deepseek_grm")
    result = module.experiment.main(module.PRESETS, module.run,
                                    argv=["--preset", "smoke", "--out", str(tmp_path)])
    lines = [l for l in capsys.readouterr().out.splitlines() if l.startswith("RESULT ")]
    assert len(lines) == 1
    assert json.loads((tmp_path / "result.json").read_text()) == result
    assert set(FIGURES) <= set(result)
    assert (tmp_path / "scaling.png").is_file()
    curve = json.loads((tmp_path / "curve.json").read_text())
    assert curve["k"] == [1, 4] and len(curve["voting"]) == len(curve["meta_voting"]) == 2
    for acc in curve["voting"] + curve["meta_voting"]:
        assert 0 <= acc <= 1
    # The plain-vote tie-break only acts on ties: without one at k = K, coin and
    # tie-break give the same accuracy.
    if result["ties_meta_voting"] == 0:
        assert result["accuracy_meta_voting"] == result["accuracy_meta_voting_coin"]
    # 8 pairs x 2 responses judged alone, k = 4: each judgment parsed or counted.
    rows = [json.loads(l) for l in (tmp_path / "judgments.jsonl").read_text().splitlines()]
    assert len(rows) == 16 and all(len(r["judgments"]) == 4 for r in rows)
    assert 0 <= result["parse_failures"] <= result["judgments"] == 64


def test_within_prompt_auroc_ignores_what_separates_prompts():
    module = load_experiment("deepseek_grm")
    # Prompt 0's judgments all get 0.9 and prompt 1's 0.1: pooled, the meta RM looks
    # good (prompt 0 agrees more); within each prompt it ranks at chance, or inverted.
    meta = np.array([[0.9, 0.9, 0.9, 0.9], [0.05, 0.1, 0.2, 0.3]])
    agree = np.array([[1, 1, 1, 0], [1, 0, 0, 0]], bool)
    valid = np.ones_like(agree)
    got = module.within_prompt_auroc(meta, agree, valid)
    assert got == (0.5 + 0.0) / 2
    valid[1, 0] = False  # prompt 1 left with one class: not counted
    assert module.within_prompt_auroc(meta, agree, valid) == 0.5
