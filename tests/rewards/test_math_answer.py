import json
import pathlib
import re
import threading
import time

import numpy as np
import pytest

import rewardjax
from rewardjax.rewards import (
    MathAnswerReward,
    answers_match,
    extract_answer,
    extract_reference_answer,
    normalize_answer,
)

GSM8K_TEST = pathlib.Path(rewardjax.__file__).parent / "assets" / "data" / "gsm8k" / "test.jsonl"


def test_extraction_order():
    assert extract_answer("\\boxed{3}\n#### 5") == "5"  # #### beats \boxed
    assert extract_answer("The answer is 4. \\boxed{6}") == "6"  # \boxed beats "answer is"
    assert extract_answer("I got 3, so the answer is 12 cm.\nCheck: 13") == "12 cm."  # phrase beats last number
    assert extract_answer("first 3 then 1,234.5 then -7/8") == "-7/8"  # last number
    assert extract_answer("no numbers here") is None


def test_last_occurrence_within_a_rule():
    assert extract_answer("#### 1\nwait\n#### 2") == "2"
    assert extract_answer("\\boxed{1} or \\boxed{\\frac{2}{3}}") == "\\frac{2}{3}"
    assert extract_answer("so \\boxed 7 is it") == "7"
    assert extract_answer("Final answer: 42") == "42"


def test_reference_extraction():
    assert extract_reference_answer("Janet sells 16 - 3 - 4 = 9 eggs.\n#### 18") == "18"
    assert extract_reference_answer("so $x=\\boxed{\\sqrt{2}}$") == "\\sqrt{2}"
    assert extract_reference_answer(" 3/4 ") == "3/4"  # bare answer
    assert extract_reference_answer("\\frac{3}{4}") == "\\frac{3}{4}"  # never the last-number rule
    assert extract_reference_answer(42) == "42"


def test_normalize():
    assert normalize_answer("$1,450,000.") == "1450000"
    assert normalize_answer("**-5 degrees**") == "-5"
    assert normalize_answer("25%") == "25"
    assert normalize_answer("\\$18.00") == "18.00"
    assert normalize_answer("1,5") == "1,5"  # not a thousands separator


@pytest.mark.parametrize(
    "pred, gold, expected",
    [
        ("1,000", "1000", True),
        ("1000", "1,000", True),
        ("3/4", "0.75", True),
        ("0.75", "\\frac{3}{4}", True),
        ("-7", "-7", True),
        ("-7", "7", False),
        ("$18.00", "18", True),
        ("18 dollars", "18", True),
        ("2\\sqrt{2}", "\\sqrt{8}", True),
        ("x^2+2x+1", "(x+1)^2", True),
        ("1000001", "1000000", False),
        ("abc", "5", False),
    ],
)
def test_answers_match(pred, gold, expected):
    assert answers_match(pred, gold) is expected


def test_reward_values_and_fields():
    reward = MathAnswerReward(correct_reward=2.0, incorrect_reward=-1.0)
    got = reward(
        ["q"] * 4,
        ["#### 1,000", "The answer is \\boxed{0.75}", "I think 41", "no idea"],
        answer=["10 * 100 = 1000\n#### 1000", "3/4", "#### 42", "#### 7"],
    )
    assert got.dtype == np.float32
    assert got.tolist() == [2.0, 2.0, -1.0, -1.0]


def test_reward_bad_input():
    reward = MathAnswerReward()
    with pytest.raises(ValueError, match="field 'answer' is missing"):
        reward(["q"], ["#### 1"], solution=["#### 1"])
    with pytest.raises(ValueError, match="'answer' has 2 values for 1"):
        reward(["q"], ["#### 1"], answer=["1", "2"])
    with pytest.raises(ValueError, match="reference answer is empty"):
        reward(["q"], ["#### 1"], answer=["  "])
    with pytest.raises(ValueError, match="timeout_seconds"):
        MathAnswerReward(timeout_seconds=0.5)


def test_works_off_the_main_thread():
    # math-verify's signal timeouts only work on the main thread; the reward turns
    # them off elsewhere instead of raising.
    out = {}
    t = threading.Thread(target=lambda: out.update(v=MathAnswerReward()(["q"], ["#### 3/4"], answer=["0.75"])))
    t.start()
    t.join()
    assert out["v"].tolist() == [1.0]


def _alter_final_number(solution: str) -> tuple[str, str, str]:
    head, _, tail = solution.rpartition("####")
    original = tail.strip()
    assert re.fullmatch(r"-?\d{1,3}(,\d{3})*|-?\d+", original), original
    new_value = int(original.replace(",", "")) + 1
    altered = f"{new_value:,}" if "," in original else str(new_value)
    return head + "#### " + altered, original, altered


def test_gsm8k_reference_solutions_score_one_and_altered_score_zero():
    rows = [json.loads(line) for line in GSM8K_TEST.read_text().splitlines()]
    assert len(rows) == 1319
    refs = [r["answer"] for r in rows]
    altered = []
    for ref in refs:
        text, original, new = _alter_final_number(ref)
        # The altered answer differs numerically and is what extraction picks up.
        assert int(new.replace(",", "")) != int(original.replace(",", ""))
        assert extract_answer(text) == new
        altered.append(text)
    reward = MathAnswerReward()
    start = time.perf_counter()
    same = reward([r["question"] for r in rows], refs, answer=refs)
    wrong = reward([r["question"] for r in rows], altered, answer=refs)
    elapsed = time.perf_counter() - start
    assert int(same.sum()) == 1319, [refs[i][-40:] for i in np.flatnonzero(same != 1.0)][:5]
    assert int(wrong.sum()) == 0, [altered[i][-40:] for i in np.flatnonzero(wrong != 0.0)][:5]
    print(f"GSM8K math reward: 2 x 1319 samples in {elapsed:.1f} s")


def test_disabled_timeout_notice_dropped_for_our_calls_only(monkeypatch, caplog):
    # math-verify warns once per process that its timeout is off; off the main thread the
    # caller's runner bounds the time, so our calls drop that notice. Other code's calls
    # of math-verify keep it.
    import math_verify
    import math_verify.grader
    import math_verify.parser

    def reset_once_flags():
        monkeypatch.setattr(math_verify.parser, "TIMEOUT_WARNING_SHOWN", False)
        monkeypatch.setattr(math_verify.grader, "TIMEOUT_WARNING_SHOWN", False)

    def notices():
        return [r for r in caplog.records if "Timeout is disabled" in r.getMessage()]

    caplog.set_level("WARNING")
    reset_once_flags()
    out = {}
    t = threading.Thread(target=lambda: out.update(v=MathAnswerReward()(["q"], ["#### 3/4"], answer=["0.75"])))
    t.start()
    t.join()
    assert out["v"].tolist() == [1.0] and notices() == []
    assert answers_match("2", "2") and notices() == []  # timeout_seconds=None on the main thread

    reset_once_flags()
    math_verify.verify(math_verify.parse("$2$", parsing_timeout=None), math_verify.parse("$2$"),
                       timeout_seconds=None)
    assert len(notices()) == 2  # parse's and verify's, as math-verify logs them
