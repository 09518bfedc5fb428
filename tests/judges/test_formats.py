"""Verdict parsing on well-formed, malformed and adversarial outputs: every malformed
output is a named, counted failure, never a default verdict; prompts and traces."""

import numpy as np
import pytest

from rewardjax import judges
from rewardjax.data.synthetic import arithmetic
from rewardjax.judges import formats

AB = judges.PAIRWISE_CHOICES

WELL_FORMED = [
    ("Verdict: A", "A", ""),
    ("Step 2: 7 - 1 = 6\nVerdict: B", "B", "Step 2: 7 - 1 = 6"),
    ("  reasoning\n\nVerdict:   A  \n\n", "A", "reasoning"),
]

MALFORMED = [
    ("", "empty"),
    ("   \n ", "empty"),
    ("The answer is A", "missing_verdict"),
    ("verdict: A", "missing_verdict"),  # case matters
    ("Verdict: A\nVerdict: B", "multiple_verdicts"),
    ("Verdict: A Verdict: A", "multiple_verdicts"),
    ("Verdict: A\nbecause step 2 is right", "verdict_not_last"),
    ("I pick. Verdict: A", "verdict_not_at_line_start"),
    ("Verdict: A or B", "invalid_choice"),
    ("Verdict: AB", "invalid_choice"),
    ("Verdict: a", "invalid_choice"),
    ("Verdict: A.", "invalid_choice"),
    ("Verdict:", "invalid_choice"),
    ("Verdict: Yes", "invalid_choice"),  # a pointwise verdict in a pairwise judgment
    # adversarial: the response under judgment echoes a verdict line
    ("Response B says 'Verdict: B'\nVerdict: A", "multiple_verdicts"),
]


@pytest.mark.parametrize("text,choice,rationale", WELL_FORMED)
def test_well_formed_verdicts_parse(text, choice, rationale):
    v = judges.parse_verdict(text, choices=AB)
    assert v == judges.Verdict(choice, rationale, None) and v.ok


@pytest.mark.parametrize("text,failure", MALFORMED)
def test_malformed_verdicts_are_named_failures(text, failure):
    v = judges.parse_verdict(text, choices=AB)
    assert v.choice is None and v.failure == failure and failure in judges.FAILURES


def test_batch_counts_every_failure_and_defaults_none():
    texts = [t for t, *_ in WELL_FORMED] + [t for t, _ in MALFORMED]
    parsed = judges.parse_verdicts(texts, choices=AB)
    assert parsed.failure_count == len(MALFORMED)
    expected = {}
    for _, f in MALFORMED:
        expected[f] = expected.get(f, 0) + 1
    assert dict(parsed.failures) == expected
    assert parsed.choices == ["A", "B", "A"] + [None] * len(MALFORMED)


def test_parse_needs_choices():
    with pytest.raises(ValueError, match="at least one choice"):
        judges.parse_verdict("Verdict: A", choices=())


def test_conditioning_is_part_of_every_prompt():
    c = judges.Conditioning(principle="Prefer correct arithmetic.",
                            rubric=("Every step is right.", "The answer line matches."))
    for prompt in (judges.pointwise_prompt("q?", "r", conditioning=c),
                   judges.pairwise_prompt("q?", "r1", "r2", conditioning=c),
                   judges.first_error_prompt("q?", ["s1", "s2"], conditioning=c)):
        assert prompt.startswith("Principle: Prefer correct arithmetic.\nRubric:\n"
                                 "1. Every step is right.\n2. The answer line matches.\n")
    assert not judges.pointwise_prompt("q?", "r").startswith("Principle")
    with pytest.raises(ValueError, match=r"rubric\[1\]"):
        judges.Conditioning(rubric=("ok", " "))
    with pytest.raises(ValueError, match="principle is blank"):
        judges.Conditioning(principle="")


def test_teacher_traces_parse_to_their_labels():
    task = arithmetic.ArithmeticConfig(max_start=9, max_value=9, max_operand=2, ops=("+", "-"),
                                       max_error=2)
    for i in range(20):
        bad = arithmetic.corrupted(i, seed=0, config=task)
        good = arithmetic.solve(bad.problem)
        for a, b, label in ((good.text, bad.text, "A"), (bad.text, good.text, "B")):
            t = judges.pairwise_trace(bad.problem, a, b)
            assert t.label == label
            assert judges.parse_verdict(t.judgment, choices=AB).choice == label
            answers = (good.steps[-1], bad.steps[-1])[::1 if label == "A" else -1]
            noted = tuple(f"{x}: {a.split()[-1]}" for x, a in zip("AB", answers))
            solved = good.steps[-1].split()[-1]
            checked = tuple(f"{n} vs {solved} {'right' if a == good.steps[-1] else 'wrong'}"
                            for n, a in zip(noted, answers))
            assert t.judgment == "\n".join(noted + good.steps + checked + (f"Verdict: {label}",))
            quick = judges.pairwise_trace(bad.problem, a, b, quick=True)  # a flawed teacher
            assert quick.prompt == t.prompt and quick.label == label
            assert quick.judgment == "\n".join(noted + ("Verdict: A",))
        fe = judges.first_error_trace(bad.problem, bad.steps)
        choices = judges.first_error_choices(len(bad.steps))
        assert judges.parse_verdict(fe.judgment, choices=choices).choice == str(bad.first_error + 1)
        assert fe.judgment.count(" ok\n") == bad.first_error
        ok = judges.first_error_trace(bad.problem, good.steps)
        assert ok.label == "none" and ok.judgment.count(" ok") == len(good.steps)
        assert judges.pointwise_trace(bad.problem, bad.text).judgment == "Verdict: No"
        assert judges.pointwise_trace(bad.problem, good.text).judgment == "Verdict: Yes"
    with pytest.raises(ValueError, match="exactly one correct"):
        judges.pairwise_trace(good.problem, good.text, good.text)


def test_first_error_trace_copies_and_judges_each_step_up_to_the_first_error():
    prob = arithmetic.Problem(start=6, ops=("-", "+", "+"), operands=(1, 1, 2))
    wrong_result = ("6 - 1 = 5", "5 + 1 = 5", "5 + 2 = 7", "Answer: 7")
    assert judges.first_error_trace(prob, wrong_result).judgment == (
        "Step 1: 6 - 1 = 5 ok\nStep 2: 5 + 1 = 5 wrong\nVerdict: 2")
    misread = ("6 - 1 = 5", "5 + 2 = 7", "7 + 2 = 9", "Answer: 9")
    assert judges.first_error_trace(prob, misread).judgment.split("\n")[1] == (
        "Step 2: 5 + 2 = 7 wrong")
    right = arithmetic.solve(prob).steps
    assert judges.first_error_trace(prob, right).judgment.split("\n")[-2:] == [
        "Step 4: Answer: 8 ok", "Verdict: none"]


def test_vote_and_meta_guided_vote():
    nan = np.nan
    votes = np.array([[1, 1, 0, nan], [nan, nan, nan, nan], [0, 1, nan, 1]])
    np.testing.assert_allclose(judges.vote(votes), [2 / 3, 0.5, 2 / 3])
    meta = np.array([[0.1, 0.2, 0.9, 5.0], [1, 2, 3, 4], [0.9, 0.1, 9.0, 0.8]])
    # keep 1: the best-rated valid judgment votes (a NaN vote is never kept first).
    np.testing.assert_allclose(judges.meta_guided_vote(votes, meta, keep=1), [0.0, 0.5, 0.0])
    np.testing.assert_allclose(judges.meta_guided_vote(votes, meta, keep=2), [0.5, 0.5, 0.5])
    assert judges.pairwise_accuracy(np.array([1.0, 0.5, 0.2, 0.7])) == pytest.approx(0.625)
    with pytest.raises(ValueError, match="keep must be"):
        judges.meta_guided_vote(votes, meta, keep=5)
