"""experiments/deepseek_grm.py end to end at its smoke size: one RESULT line equal to
result.json, the scaling plot and curve, every held-out judgment dumped; the presets
load and name their paper."""

import json

from tests.experiments.conftest import load_experiment

FIGURES = ("accuracy_k1", "accuracy_voting", "accuracy_meta_voting", "gain_voting",
           "gain_meta", "k", "k_meta", "sample_agreement", "meta_auroc", "parse_failures")


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
    # 8 pairs x 2 responses judged alone, k = 4: each judgment parsed or counted.
    rows = [json.loads(l) for l in (tmp_path / "judgments.jsonl").read_text().splitlines()]
    assert len(rows) == 16 and all(len(r["judgments"]) == 4 for r in rows)
    assert 0 <= result["parse_failures"] <= result["judgments"] == 64
