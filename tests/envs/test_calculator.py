"""The calculator environment (code runs in the sandbox) and ToolRL's tool-call rewards,
against hand-computed values."""

import doctest
import json
import os
from importlib import resources
from pathlib import Path

import pytest

from rewardjax.data.synthetic import arithmetic
from rewardjax.envs import calculator, tool_rewards
from rewardjax.envs.base import Turn
from rewardjax.envs.calculator import (CalculatorConfig, CalculatorEnv, expression, parse_calls,
                                       parse_problem, tool_trace)
from rewardjax.envs.tool_rewards import ToolCall, correctness, tool_reward

PROBLEM = arithmetic.Problem(start=12, ops=("+", "*", "-"), operands=(7, 3, 5))


def test_toolrl_correctness_by_hand():
    truth = [ToolCall("python", {"code": "print(1+2)"}), ToolCall("search", {"q": "a", "k": "3"})]
    # S_max = 1 + 2 calls + 3 keys = 6. Predicted: the right python call and a search
    # call with one right key, one wrong value and one extra key.
    pred = [ToolCall("search", {"q": "a", "k": "4", "x": "1"}), ToolCall("python",
                                                                        {"code": "print(1 + 2)"})]
    r = correctness(pred, truth)
    assert r.name == 1.0
    assert r.param == pytest.approx(1.0 + 2 / 3)  # python {code}; search {q,k} vs {q,k,x}
    assert r.value == 2.0  # code (whitespace ignored) and q
    assert r.max_score == 6.0
    assert r.correct == pytest.approx(6 * (1 + 5 / 3 + 2) / 6 - 3)
    # a wrong tool name: names {python} vs {calc}: Jaccard 0; the pair still matches keys
    wrong = correctness([ToolCall("calc", {"code": "print(1+2)"})], truth[:1])
    assert (wrong.name, wrong.param, wrong.value) == (0.0, 1.0, 1.0)
    assert wrong.correct == pytest.approx(6 * 2 / 3 - 3)
    # no calls at all: the floor; the format term adds on top
    assert tool_reward([], truth[:1], format_ok=True).total == pytest.approx(-3 + 1)
    assert correctness([], []).correct == 3.0


def test_tool_rewards_docstring_examples():
    assert doctest.testmod(tool_rewards).failed == 0


def test_expression_trace_and_question_round_trip():
    assert expression(PROBLEM) == "(12+7)*3-5"
    assert expression(arithmetic.Problem(start=4, ops=("*", "+", "*"), operands=(2, 1, 3))) == \
        "(4*2+1)*3"
    assert tool_trace(PROBLEM) == "<call>python: print((12+7)*3-5)</call><out>52</out>\nAnswer: 52"
    assert parse_problem(PROBLEM.question) == PROBLEM
    for p in arithmetic.problems(50, seed=0):
        assert eval(expression(p)) == p.answer  # noqa: S307 -- our own generated expression
    with pytest.raises(ValueError, match="not a synthetic arithmetic question"):
        parse_problem("What is 2+2?")


def _turn(text, *, turn=0, transcript=(), answer="52", rollout=0):
    return Turn(rollout=rollout, record={"prompt": PROBLEM.question, "answer": answer},
                turn=turn, text=text, transcript=transcript)


def test_calls_run_in_the_sandbox_and_answers_end_the_rollout():
    env = CalculatorEnv(CalculatorConfig(max_calls=1, tool_weight=0.5))
    call = "<call>python: print((12+7)*3-5)</call>"
    out = env.step([
        _turn(call),
        _turn("<call>python: import os; print(os.getpid())</call>"),
        _turn("<call>python: 1/0</call>"),
        _turn("<call>shell: ls</call>"),
        _turn(call, turn=1, transcript=(call, "<out>52</out>\n")),
        _turn("Answer: 52", turn=1, transcript=(call, "<out>52</out>\n")),
        _turn("Answer: 51"),
    ])
    assert out[0].observation == "<out>52</out>\n" and not out[0].done
    # the code ran in another process, not the trainer's
    pid = out[1].observation[len("<out>"):-len("</out>\n")]
    assert pid.isdigit() and int(pid) != os.getpid()
    assert out[2].observation == "<out>error: nonzero_exit</out>\n"
    assert out[2].info["env/call_errors"] == 1.0
    assert out[3].observation == "<out>error: unknown tool shell</out>\n"
    assert out[4].observation == "<out>error: too many calls</out>\n"
    # right answer after the ground-truth call, good format: 1 + 0.5 * (1 + 3)
    assert out[5].done and out[5].reward == pytest.approx(1 + 0.5 * 4)
    # wrong answer, no call: 0 + 0.5 * (1 - 3)
    assert out[6].done and out[6].reward == pytest.approx(0.5 * -2)


def test_gsm8k_records_with_the_math_grader():
    """The tool on GSM8K (the shipped test split): the call runs, and the final answer is
    graded by math-verify against the reference solution's "#### 18"."""
    path = Path(str(resources.files("rewardjax"))) / "assets/data/gsm8k/test.jsonl"
    ex = json.loads(path.read_text().splitlines()[0])
    record = {"prompt": ex["question"], "answer": ex["answer"]}
    assert ex["answer"].endswith("#### 18")
    env = CalculatorEnv(CalculatorConfig(grader="math"))
    assert env.reset(record) == ex["question"]
    call = "<call>python: print((16-3-4)*2)</call>"
    first = env.step([Turn(rollout=0, record=record, turn=0, text=call, transcript=())])[0]
    assert first.observation == "<out>18</out>\n" and not first.done
    done = (call, first.observation)
    right, wrong, words = env.step([
        Turn(rollout=0, record=record, turn=1, text="Answer: 18", transcript=done),
        Turn(rollout=1, record=record, turn=1, text="Answer: 17", transcript=done),
        Turn(rollout=2, record=record, turn=1, text="She makes $18 a day. #### 18",
             transcript=done)])
    assert (right.reward, wrong.reward, words.reward) == (1.0, 0.0, 1.0)
    # The grader reads the model's own text, never the tool's output.
    echo = env.step([Turn(rollout=0, record=record, turn=1, text="I am done.", transcript=done)])
    assert echo[0].reward == 0.0
    with pytest.raises(ValueError, match="grader"):
        CalculatorConfig(grader="exact")
    with pytest.raises(ValueError, match="tool_weight"):
        CalculatorConfig(grader="math", tool_weight=1.0)


def test_without_the_tool_nothing_runs():
    env = CalculatorEnv(CalculatorConfig(tool=False))
    out = env.step([_turn("<call>python: print(52)</call>")])
    assert out[0].observation == "<out>error: no tool</out>\n" and not out[0].done
    assert parse_calls("a <call>python: x</call> b <call>calc:  y </call>") == [
        ToolCall("python", {"code": "x"}), ToolCall("calc", {"code": "y"})]


def test_bad_settings_are_named():
    with pytest.raises(ValueError, match="max_calls"):
        CalculatorConfig(max_calls=0)
    with pytest.raises(KeyError, match="'answer'"):
        CalculatorEnv().reset({"prompt": "q"})
    assert calculator.answer_format_ok("<call>python: 1</call><out>1</out>\nAnswer: 1")
    assert not calculator.answer_format_ok("<call>python: 1 Answer: 1")
