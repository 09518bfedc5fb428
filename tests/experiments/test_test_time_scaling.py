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
    assert result["early_rejection_delta"] == round(
        result["early_rejection_2"] - result["prm_bon_min_2"], 4)


def test_process_diagnostics_separates_right_lines_from_lucky_answers():
    import numpy as np

    from rewardjax.data.synthetic import arithmetic
    from rewardjax.search import Candidate, SearchResult

    module = load_experiment("test_time_scaling")
    p = arithmetic.Problem(start=3, ops=("+", "-"), operands=(2, 1))  # 3 + 2 = 5, 5 - 1 = 4
    texts = ["3 + 2 = 5\n5 - 1 = 4\nAnswer: 4",   # right line by line
             "3 + 2 = 6\n6 - 2 = 4\nAnswer: 4",   # right answer through a wrong line
             "3 + 2 = 5\n5 - 2 = 3\nAnswer: 3"]   # wrong
    cands = [Candidate(text=t, finished=True, step_scores=np.zeros(3), steps=(), tokens=1)
             for t in texts]
    res = SearchResult(candidates=[cands], scores=[np.zeros(3)],
                       answers=[[arithmetic.extract_answer(t) for t in texts]], chosen=[0],
                       cost={})
    d = module.process_diagnostics([p], res, [np.array([0.9, 0.2, 0.5])])
    assert d["process_correct"] == 1 / 3 and d["right_via_wrong_steps"] == 0.5
    assert d["pass_at_n_process"] == 1.0
    assert d["prm_auroc_process"] == 1.0 and d["prm_auroc_answer"] == 0.5


def test_answer_line_negatives_label_a_wrong_answer_line_after_right_steps():
    from rewardjax.data.records import StepSolution
    from rewardjax.data.synthetic import arithmetic

    module = load_experiment("test_time_scaling")
    right = StepSolution(prompt="q", steps=("3 + 2 = 5", "5 - 1 = 4", "Answer: 4"),
                         labels=(1.0, 1.0, 1.0))
    wrong = StepSolution(prompt="q", steps=("3 + 2 = 6", "6 - 1 = 5", "Answer: 5"),
                         labels=(0.0, 0.0, 0.0))
    out = module.answer_line_negatives([right] * 200 + [wrong] * 200, 0.5, seed=0, max_value=5)
    assert 60 < len(out) < 140  # about half of the right ones, none of the wrong ones
    lines = {r.steps[-1] for r in out}
    assert "Answer:" in lines and lines <= {"Answer:", "Answer: 2", "Answer: 3", "Answer: 5"}
    for r in out:
        assert r.steps[:-1] == right.steps[:-1] and r.labels == (1.0, 1.0, 0.0)
        assert arithmetic.extract_answer(r.steps[-1]) != 4
    assert module.answer_line_negatives([right] * 10, 0.0, seed=0, max_value=5) == []
    import pytest
    with pytest.raises(ValueError, match="answer_negatives"):
        module.VerifierConfig(answer_negatives=1.5)
