"""Text-to-SQL: Reasoning-SQL's partial rewards against hand-computed values, the synthetic
database and questions, and the environment running queries in the sandbox."""

import pytest

from rewardjax.envs import sandbox
from rewardjax.envs.base import Turn
from rewardjax.envs.sql import (SCHEMA, TEMPLATES, SQLEnv, SQLEnvConfig, SQLRewardWeights,
                                build_database, extract_query, format_ok, gold_rows, questions,
                                rows_match, schema_items, sql_reward, sql_trace)

GOLD = "SELECT COUNT(*) FROM employees WHERE city = 'Oslo'"


def _result(rows, reason=sandbox.Reason.OK):
    return sandbox.Result(reason=reason, stdout="", stderr="", exit_code=0, signal=None,
                          stdout_truncated=False, stderr_truncated=False, exception=None,
                          error=None if reason is sandbox.Reason.OK else "x",
                          rows=rows, cpu_s=0.0, wall_s=0.0, started=0.0, finished=0.0)


def test_partial_rewards_hand_computed():
    # Wrong city: rows differ; 9 of the 11 distinct bigrams shared (only "= 'Oslo'" vs
    # "= 'Lima'" differ); same schema items {employees, employees.city}.
    r = sql_reward("<sql>SELECT COUNT(*) FROM employees WHERE city = 'Lima'</sql>",
                   _result(((3,),)), gold_query=GOLD, gold_rows=((4,),), schema=SCHEMA)
    assert (r.execution, r.syntax, r.schema, r.format) == (0.0, 1.0, 1.0, 1.0)
    assert r.ngram == pytest.approx(9 / 11)
    assert r.total == pytest.approx(0 + 1 + 1 + 9 / 11 + 1)
    # Right, written differently (case, spacing): every reward, 3 + 1 + 1 + 1 + 1.
    r = sql_reward("<sql>select count(*) from employees where city='Oslo'</sql>",
                   _result(((4,),)), gold_query=GOLD, gold_rows=((4,),), schema=SCHEMA)
    assert r == (1.0, 1.0, 1.0, 1.0, 1.0, 7.0)
    # A syntax error: schema 2/3 ({employees, .name} of {employees, .name, .age}),
    # bigrams 2 shared of 8, format 1.
    gold = "SELECT name FROM employees WHERE age > 30"
    r = sql_reward("<sql>SELEC name FROM employees</sql>",
                   _result(None, sandbox.Reason.NONZERO_EXIT), gold_query=gold,
                   gold_rows=(("Ada",),), schema=SCHEMA)
    assert (r.execution, r.syntax, r.format) == (0.0, 0.0, 1.0)
    assert r.schema == pytest.approx(2 / 3) and r.ngram == pytest.approx(2 / 8)
    assert r.total == pytest.approx(2 / 3 + 0.25 + 1)
    # No block: nothing to run, every reward 0; weights scale each part.
    assert sql_reward(GOLD, None, gold_query=GOLD, gold_rows=((4,),), schema=SCHEMA).total == 0
    w = SQLRewardWeights(execution=1, syntax=0, schema=0, ngram=0, format=0)
    assert sql_reward(f"<sql>{GOLD}</sql>", _result(((4,),)), gold_query=GOLD,
                      gold_rows=((4,),), schema=SCHEMA, weights=w).total == 1.0


def test_parsing_schema_items_and_row_matching():
    assert extract_query("think <sql> a </sql> then <sql>SELECT 1</sql>") == "SELECT 1"
    assert extract_query("<sql>  </sql>") is None and extract_query("SELECT 1") is None
    assert format_ok("<sql>SELECT 1</sql>\n") and not format_ok("<sql>SELECT 1</sql> more")
    assert not format_ok("<sql>SELECT 1</sql><sql>SELECT 2</sql>")
    join = ("SELECT departments.floor FROM employees JOIN departments ON employees.dept = "
            "departments.name WHERE employees.name = 'Ada'")
    assert schema_items(join, SCHEMA) == {"employees", "departments", "departments.floor",
                                          "employees.dept", "employees.name",
                                          "departments.name"}
    # A schema word inside a string literal is a value, not a schema item.
    assert schema_items("SELECT 1 WHERE 'salary' = 'budget'", SCHEMA) == set()
    assert rows_match([(1,), (2,)], [(2,), (1,)], ordered=False)
    assert not rows_match([(1,), (2,)], [(2,), (1,)], ordered=True)
    assert rows_match([(0.1 + 0.2,)], [(0.3,)], ordered=True)
    assert not rows_match([(1,), (1,)], [(1,)], ordered=False)  # multisets


def test_database_and_questions_are_seeded_and_every_gold_query_runs():
    script = build_database(0)
    assert script == build_database(0) and script != build_database(1)
    qs = questions(50, seed=3)
    assert [q.prompt for q in qs] == [q.prompt for q in questions(50, seed=3)]
    kinds = {(q.answer.split(" WHERE")[0], " AND " in q.answer) for q in qs}
    assert len(kinds) == 5  # all five templates drawn
    for q in qs:
        gold_rows(script, q.answer)
    assert gold_rows(script, "SELECT COUNT(*) FROM employees") == ((24,),)
    assert sql_trace(qs[0]) == f"<sql>{qs[0].answer}</sql>"
    with pytest.raises(ValueError, match="templates must be a non-empty subset"):
        questions(2, seed=0, templates=("count_city", "nope"))
    with pytest.raises(ValueError, match="employees must be in"):
        SQLEnvConfig(employees=0)
    with pytest.raises(ValueError, match="SQLRewardWeights.execution must be a number >= 0"):
        SQLRewardWeights(execution=-1)
    assert set(TEMPLATES) >= {"count_city", "floor_of"}


def test_environment_runs_queries_in_the_sandbox():
    env = SQLEnv(SQLEnvConfig(), render=lambda q: f"Q: {q}")
    record = {"prompt": "How many employees are there?",
              "answer": "SELECT COUNT(*) FROM employees"}
    assert env.reset(record) == "Q: How many employees are there?"
    texts = ["<sql>select count(id) from employees</sql>",  # right rows, other text
             "<sql>SELECT COUNT(*) FROM employes</sql>",  # no such table: an error
             "<sql>DELETE FROM employees</sql>",  # runs on a copy: nothing changes here
             "no query"]
    out = env.step([Turn(rollout=i, record=record, turn=0, text=t, transcript=())
                    for i, t in enumerate(texts)])
    assert all(o.done for o in out)
    assert [o.info["env/correct"] for o in out] == [1.0, 0.0, 0.0, 0.0]
    assert [o.info["env/syntax"] for o in out] == [1.0, 0.0, 1.0, 0.0]
    # select count ( id ) from employees vs select count ( * ) from employees:
    # bigrams share 4 of 8; schema items {employees, employees.id} vs {employees}.
    assert out[0].reward == pytest.approx(3 + 1 + 1 / 2 + 4 / 8 + 1)
    assert out[3].reward == 0.0
    again = env.step([Turn(rollout=0, record=record, turn=0, text=texts[0], transcript=())])
    assert again[0].info["env/correct"] == 1.0
    with pytest.raises(KeyError, match="no 'answer' field"):
        env.reset({"prompt": "x"})
    bad = {"prompt": "x", "answer": "SELECT nope FROM employees"}
    with pytest.raises(ValueError, match="gold query .* fails"):
        env.step([Turn(rollout=0, record=bad, turn=0, text=texts[0], transcript=())])
