"""experiments/test_time_scaling.py: the smoke preset end to end, and its presets load."""

import json

from tests.experiments.conftest import load_experiment


def test_presets_load_and_name_their_paper():
    module = load_experiment("test_time_scaling")
    assert {"tiny", "smoke", "paper"} <= set(module.PRESETS)
    assert "arXiv:2408.03314" in module.__doc__ and "tiny" in module.__doc__
    assert module.PRESETS["tiny"].report_n == 16 and 32 in module.PRESETS["tiny"].ns


def test_smoke_writes_the_figures_and_the_plot(tmp_path, capsys):
    module = load_experiment("test_time_scaling")
    out = tmp_path / "tts"
    result = module.experiment.main(module.PRESETS, module.run,
                                    argv=["--preset", "smoke", "--out", str(out)])
    lines = [l for l in capsys.readouterr().out.splitlines() if l.startswith("RESULT ")]
    assert lines and (out / "result.json").is_file() and (out / "scaling.png").is_file()
    for method in module.METHODS:
        assert 0.0 <= result[f"{method}_2"] <= 1.0
        assert result[f"{method}_2_tokens"] > 0
    curves = json.loads((out / "curves.json").read_text())
    assert set(curves["beam"]) == {"1", "2"} and curves["beam"]["2"]["flops"] > 0
    assert "early_rejection_token_saving" in result
