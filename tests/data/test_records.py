"""Record validation and JSONL readers."""

import gzip
import json
import logging

import pytest

from rewardjax.data.readers import read_jsonl, write_jsonl
from rewardjax.data.records import (AttributeRating, Message, PreferencePair, PromptWithAnswer,
                                    Ranking, RecordError, SFTExample, StepSolution)

CHAT = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi?"}]


def _write(path, rows):
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wt", encoding="utf-8") as f:
        for row in rows:
            f.write(row if isinstance(row, str) else json.dumps(row))
            f.write("\n")
    return path


def test_preference_pair_converts_messages_and_round_trips():
    pair = PreferencePair(prompt=CHAT, chosen="Hello.",
                          rejected=[{"role": "assistant", "content": "Go away."}], margin=2,
                          subset="chat")
    assert pair.prompt == (Message(role="system", content="Be brief."),
                           Message(role="user", content="Hi?"))
    assert pair.rejected == (Message(role="assistant", content="Go away."),)
    assert pair.margin == 2.0
    assert PreferencePair.from_json(pair.to_json()) == pair
    assert "margin" not in PreferencePair(prompt="p", chosen="a", rejected="b").to_json()


@pytest.mark.parametrize("record", [
    Ranking(prompt="p", responses=["a", "b", "c"], ranking=[2, 0, 1]),
    Ranking(prompt=CHAT, responses=["a", "b"], scores=[0.5, 1.5], subset="s"),
    AttributeRating(prompt="p", response="r", ratings={"helpfulness": 3, "verbosity": None}),
    StepSolution(prompt="p", steps=["1 + 1 = 2", "Answer: 2"], labels=[1, 0.25]),
    SFTExample(prompt=CHAT, completion="Hello."),
    PromptWithAnswer(prompt="2 + 2?", answer="4"),
])
def test_records_round_trip_through_json(record):
    assert type(record).from_json(json.loads(json.dumps(record.to_json()))) == record


def test_ranking_order_and_step_properties():
    assert Ranking(prompt="p", responses=["a", "b", "c"], scores=[1, 3, 2]).order == (1, 2, 0)
    assert Ranking(prompt="p", responses=["a", "b"], ranking=[1, 0], scores=[0, 1]).order == (1, 0)
    hard = StepSolution(prompt="p", steps=["a", "b", "c"], labels=[1, 0, 0])
    soft = StepSolution(prompt="p", steps=["a", "b"], labels=[0.9, 0.6])
    assert hard.is_hard and hard.first_error == 1
    assert not soft.is_hard and soft.first_error == -1
    cut = hard.up_to_first_error()
    assert cut.steps == ("a", "b") and cut.labels == (1.0, 0.0) and cut.prompt == "p"
    assert soft.up_to_first_error() is soft
    mc = StepSolution(prompt="p", steps=["a", "b", "c"], labels=[0.75, 0.25, 0.5])
    assert mc.up_to_first_error().labels == (0.75, 0.25)


@pytest.mark.parametrize("kwargs, field, expected", [
    (dict(prompt="p", chosen=3, rejected="r"), "chosen", "a string or a list"),
    (dict(prompt=[{"role": "usr", "content": "x"}], chosen="c", rejected="r"), "prompt[0].role",
     "one of system, user"),
    (dict(prompt=[{"role": "user"}], chosen="c", rejected="r"), "prompt[0].content",
     "role and content"),
    (dict(prompt="p", chosen=[{"role": "user", "content": "x"}], rejected="r"), "chosen[0].role",
     "one of assistant, tool"),
    (dict(prompt="p", chosen="c", rejected="r", margin="big"), "margin", "a finite number"),
    (dict(prompt="p", chosen="c", rejected="r", margin=float("nan")), "margin", "a finite number"),
    (dict(prompt=[], chosen="c", rejected="r"), "prompt", "a non-empty list"),
])
def test_preference_pair_errors_name_the_field(kwargs, field, expected):
    with pytest.raises(RecordError) as info:
        PreferencePair(**kwargs)
    assert info.value.field == field
    assert f"field {field!r}" in str(info.value) and expected in str(info.value)


@pytest.mark.parametrize("make, field", [
    (lambda: Ranking(prompt="p", responses=["a"], scores=[1]), "responses"),
    (lambda: Ranking(prompt="p", responses=["a", "b"]), "ranking"),
    (lambda: Ranking(prompt="p", responses=["a", "b"], ranking=[0, 0]), "ranking"),
    (lambda: Ranking(prompt="p", responses=["a", "b"], scores=[1]), "scores"),
    (lambda: Ranking(prompt="p", responses=["a", "b"], ranking=[0, 1], scores=[0, 1]), "ranking"),
    (lambda: AttributeRating(prompt="p", response="r", ratings={}), "ratings"),
    (lambda: AttributeRating(prompt="p", response="r", ratings={"help": "high"}), "ratings.help"),
    (lambda: StepSolution(prompt="p", steps=["a", "b"], labels=[1]), "labels"),
    (lambda: StepSolution(prompt="p", steps=["a"], labels=[1.5]), "labels[0]"),
    (lambda: StepSolution(prompt="p", steps=["a"], labels=[True]), "labels[0]"),
    (lambda: StepSolution(prompt="p", steps=["a", " "], labels=[1, 1]), "steps[1]"),
    (lambda: PromptWithAnswer(prompt="p", answer=4), "answer"),
])
def test_other_record_errors_name_the_field(make, field):
    with pytest.raises(RecordError) as info:
        make()
    assert info.value.field == field


def test_reader_error_names_file_line_and_field(tmp_path):
    path = _write(tmp_path / "pairs.jsonl", [
        {"prompt": "p", "chosen": "c", "rejected": "r"},
        "",  # blank lines are skipped but still counted as lines
        {"prompt": "p", "chosen": ["not a message"], "rejected": "r"},
    ])
    with pytest.raises(RecordError) as info:
        read_jsonl(path, PreferencePair)
    message = str(info.value)
    assert message.startswith(f"{path}:3: field 'chosen[0]': expected a {{role, content}} message")
    assert (info.value.path, info.value.line, info.value.field) == (str(path), 3, "chosen[0]")


def test_reader_missing_field_and_bad_json(tmp_path):
    path = _write(tmp_path / "pairs.jsonl.gz", [{"prompt": "p", "chosen": "c"}])
    missing = (r"pairs.jsonl.gz:1: field 'rejected': expected a value "
               r"\(required by PreferencePair\), but the field is missing")
    with pytest.raises(RecordError, match=missing):
        read_jsonl(path, PreferencePair)
    path = _write(tmp_path / "bad.jsonl", [{"prompt": "p", "chosen": "c", "rejected": "r"},
                                           '{"prompt": "p", "chosen": '])
    with pytest.raises(RecordError, match=r"bad.jsonl:2: expected valid JSON"):
        read_jsonl(path, PreferencePair)
    path = _write(tmp_path / "list.jsonl", ['["p", "c", "r"]'])
    with pytest.raises(RecordError, match=r"list.jsonl:1: expected a JSON object"):
        read_jsonl(path, PreferencePair)


def test_skip_invalid_counts_and_logs(tmp_path, caplog):
    path = _write(tmp_path / "steps.jsonl.gz", [
        {"prompt": "p", "steps": ["a", "b"], "labels": [1, 0]},
        {"prompt": "p", "steps": ["a", "b"], "labels": [1]},  # wrong length
        "not json",
        {"prompt": "p", "steps": ["a"], "labels": [0.5]},
        {"prompt": "p", "steps": ["a"], "labels": [2]},  # out of range
    ])
    with caplog.at_level(logging.WARNING):
        result = read_jsonl(path, StepSolution, skip_invalid=True)
    assert len(result.records) == 2 and result.num_skipped == 3
    lines = [e.split(": field")[0].split(":")[-1] for e in result.errors if "field" in e]
    assert lines == ["2", "5"]
    assert "skipped 3 invalid StepSolution" in caplog.text
    assert read_jsonl(path, StepSolution, skip_invalid=True, limit=1).records == result.records[:1]


def test_strict_mode_rejects_unknown_keys(tmp_path):
    path = _write(tmp_path / "pairs.jsonl", [{"prompt": "p", "chosen": "c", "rejected": "r",
                                              "margn": 1.0}])
    assert len(read_jsonl(path, PreferencePair).records) == 1
    with pytest.raises(RecordError, match=r"pairs.jsonl:1: field 'margn': expected one of"):
        read_jsonl(path, PreferencePair, strict=True)


def test_write_then_read(tmp_path):
    records = [AttributeRating(prompt=CHAT, response="r", ratings={"a": 1.0, "b": None}),
               AttributeRating(prompt="p", response="s", ratings={"a": 4})]
    path = tmp_path / "ratings.jsonl.gz"
    assert write_jsonl(path, records) == 2
    assert read_jsonl(path, AttributeRating).records == records
