"""The tool-augmented judge's traces, records and environment (Themis, arXiv:2310.01045)."""

import pytest

from rewardjax.data.synthetic import arithmetic
from rewardjax.envs.base import Turn
from rewardjax.envs.calculator import CalculatorConfig
from rewardjax.envs.tool_judge import (ToolJudgeConfig, ToolJudgeEnv, claimed_answer,
                                       judge_accuracy_by_label, judge_records, judge_trace)
from rewardjax.recipes.tasks import TINY_RL_TASK

PROBLEM = arithmetic.Problem(start=6, ops=("-", "+", "+"), operands=(2, 1, 1))  # 6


def test_traces_by_hand():
    assert judge_trace(PROBLEM, 6, tool=True) == (
        "<call>python: print(6-2+1+1)</call><out>6</out>\n6 vs 6 right\nVerdict: Yes")
    assert judge_trace(PROBLEM, 12, tool=False) == (
        "<call>python: print(6-2+1+1)</call><out>error: no tool</out>\n12 vs 6 wrong\n"
        "Verdict: No")


def test_records_are_balanced_and_labelled_by_the_claim():
    records = judge_records(200, seed=0, task=TINY_RL_TASK, split="train")
    assert 0.4 < sum(r["label"] == "Yes" for r in records) / 200 < 0.6
    for r in records:
        assert f"Answer: {r['claimed']}" in r["prompt"] and r["question"] in r["prompt"]
    with pytest.raises(ValueError, match="no 'Answer: N' line in '5 \\+ 1 = 6'"):
        claimed_answer("5 + 1 = 6")


def _turns(record, texts_and_transcripts):
    return [Turn(rollout=i, record=record, turn=len(tr) // 2, text=text, transcript=tr)
            for i, (text, tr) in enumerate(texts_and_transcripts)]


def test_env_runs_the_call_and_rewards_the_verdict():
    record = {"prompt": "p", "label": "No"}
    env = ToolJudgeEnv(end_texts=["<|im_end|>"])
    call = "<call>python: print(6-2+1+1)</call>"
    out = env.step(_turns(record, [
        (call, ()),
        ("12 vs 6 wrong\nVerdict: No<|im_end|>", (call, "<out>6</out>\n")),
        ("Verdict: Yes", ()),
        ("12 vs 6", ()),
    ]))
    assert out[0].observation == "<out>6</out>\n" and not out[0].done
    assert out[0].info == {"env/calls": 1.0, "env/call_errors": 0.0}
    # verdict match 1 + format 0.5; wrong verdict: format only; no verdict: nothing
    assert [(t.reward, t.done, t.info["env/correct"]) for t in out[1:]] == [
        (1.5, True, 1.0), (0.5, True, 0.0), (0.0, True, 0.0)]
    assert out[3].info["env/verdict_parsed"] == 0.0


def test_env_without_the_tool_and_bad_records():
    env = ToolJudgeEnv(ToolJudgeConfig(calculator=CalculatorConfig(tool=False, max_calls=1)))
    (t,) = env.step(_turns({"prompt": "p", "label": "Yes"},
                           [("<call>python: print(6-2+1+1)</call>", ())]))
    assert t.observation == "<out>error: no tool</out>\n" and not t.done
    with pytest.raises(ValueError, match="record label 'yes': expected one of \\('Yes', 'No'\\)"):
        env.reset({"prompt": "p", "label": "yes"})
    with pytest.raises(KeyError, match="ToolJudgeEnv: record has no 'label' field"):
        env.reset({"prompt": "p"})
    with pytest.raises(ValueError, match="format_weight = -1"):
        ToolJudgeConfig(format_weight=-1)


def test_accuracy_by_label():
    records = [{"label": "Yes"}, {"label": "No"}, {"label": "No"}]
    samples = [{"correct": True}, {"correct": False}, {"correct": True}]
    assert judge_accuracy_by_label(samples, records) == {"Yes": 1.0, "No": 0.5}
    assert judge_accuracy_by_label(samples[1:], records[1:]) == {"No": 0.5}
    with pytest.raises(ValueError, match="2 samples for 3 records"):
        judge_accuracy_by_label(samples[:2], records)
