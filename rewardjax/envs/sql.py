"""SQLite text-to-SQL: a synthetic database, questions with gold queries, and the
partial rewards of "Reasoning-SQL: Reinforcement Learning with SQL Tailored Partial
Rewards for Reasoning-Enhanced Text-to-SQL" (arXiv:2503.23157).

The policy answers a question with one query in a block,

    <sql>SELECT COUNT(*) FROM employees WHERE city = 'Oslo'</sql>

which runs through `rewardjax.envs.sandbox` (`SQLProgram` on a copy of the database;
never in the trainer's process). The reward is Reasoning-SQL's sum of partial rewards,

    R = w_ex * [rows equal the gold query's]          (execution accuracy; paper: 3)
      + w_syn * [the query ran without an error]      (syntax check; paper: 1)
      + w_sch * J(schema items of the query, gold's)  (schema linking; Jaccard)
      + w_ng  * J(token bigrams of the query, gold's) (n-gram similarity; Jaccard)
      + w_fmt * [exactly one <sql> block, nothing after it]  (format)

with J(A, B) = |A ∩ B| / |A ∪ B| (1 when both are empty). The paper's fifth reward, an
LLM judge of the query, is not here (it needs a judge model; `rewardjax.judges`).
Rows compare as multisets, or in order when the gold query has ORDER BY (as the Spider
and BIRD execution match do). Schema items are the table and column names of the
database that the query mentions, found by matching its identifiers against the schema
(no SQL parser: an identifier inside a string literal does not count).

The database (`build_database`) and the questions (`questions`) are generated in code
from a seed, so nothing is downloaded: two tables, `employees` and `departments`, and
question templates from a one-table filter to a two-table join.
"""

from __future__ import annotations

import dataclasses
import re
import sqlite3
from typing import Any, Callable, Mapping, NamedTuple, Sequence

import numpy as np

from rewardjax.data.records import PromptWithAnswer
from rewardjax.envs import sandbox
from rewardjax.envs.base import Environment, Transition, Turn, require_fields

SQL_OPEN, SQL_CLOSE = "<sql>", "</sql>"
_BLOCK = re.compile(re.escape(SQL_OPEN) + r"(.*?)" + re.escape(SQL_CLOSE), re.S)
# Quoted strings first, so that words inside a literal are not read as identifiers.
_TOKEN = re.compile(r"'(?:[^']|'')*'|\"[^\"]*\"|[A-Za-z_][A-Za-z0-9_]*|\d+(?:\.\d+)?|<=|>=|<>|!=|\S")

CITIES = ("Oslo", "Lima", "Rome", "Kyiv", "Baku", "Doha")
DEPARTMENTS = ("sales", "legal", "research", "support")
NAMES = ("Ada", "Ben", "Cleo", "Dan", "Eva", "Finn", "Gus", "Hana", "Ivo", "Jon", "Kai", "Lea",
         "Max", "Nia", "Oto", "Pia", "Rex", "Sol", "Tom", "Uma", "Vic", "Wes", "Yan", "Zoe")
TEMPLATES = ("count_city", "names_older", "max_salary_dept", "count_dept_city", "floor_of")


@dataclasses.dataclass(frozen=True, kw_only=True)
class SQLRewardWeights:
    """Weights of Reasoning-SQL's partial rewards (arXiv:2503.23157); defaults are the
    paper's (execution 3, the others 1)."""

    execution: float = 3.0
    syntax: float = 1.0
    schema: float = 1.0
    ngram: float = 1.0
    format: float = 1.0

    def __post_init__(self):
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v >= 0:
                raise ValueError(f"SQLRewardWeights.{f.name} must be a number >= 0, got {v!r}")


class SQLReward(NamedTuple):
    """Each partial reward in [0, 1] and the weighted sum."""

    execution: float
    syntax: float
    schema: float
    ngram: float
    format: float
    total: float


def extract_query(text: str) -> str | None:
    """The query in the last `<sql>...</sql>` block of `text` (None without one)."""
    blocks = _BLOCK.findall(text)
    return blocks[-1].strip() if blocks and blocks[-1].strip() else None


def format_ok(text: str) -> bool:
    """Exactly one non-empty `<sql>` block and nothing but whitespace after it."""
    blocks = _BLOCK.findall(text)
    return (len(blocks) == 1 and bool(blocks[0].strip())
            and not text.rsplit(SQL_CLOSE, 1)[1].strip())


def sql_tokens(query: str) -> list[str]:
    """Lower-cased tokens of `query` (keywords, identifiers, numbers, operators);
    string literals are one token each and keep their case."""
    return [t if t[0] in "'\"" else t.lower() for t in _TOKEN.findall(query)]


def schema_items(query: str, schema: Mapping[str, Sequence[str]]) -> set[str]:
    """The tables of `schema` (table -> columns) that `query` mentions, and `table.column`
    for each column it mentions of a table it mentions (a bare column counts for every
    mentioned table that has it)."""
    words = {t.strip('"') for t in sql_tokens(query) if t[0] != "'"}
    items = set()
    for table, columns in schema.items():
        if table.lower() in words:
            items.add(table.lower())
            items.update(f"{table.lower()}.{c.lower()}" for c in columns if c.lower() in words)
    return items


def jaccard(a: set, b: set) -> float:
    """|a ∩ b| / |a ∪ b|, and 1 for two empty sets."""
    return 1.0 if not a and not b else len(a & b) / len(a | b)


def bigrams(query: str) -> set[tuple[str, str]]:
    toks = sql_tokens(query)
    return set(zip(toks, toks[1:]))


def rows_match(rows: Sequence[Sequence], gold: Sequence[Sequence], *, ordered: bool) -> bool:
    """Execution match: the same rows (floats to 6 decimals), in order if `ordered`."""
    def norm(rs):
        return [tuple(round(v, 6) if isinstance(v, float) else v for v in r) for r in rs]

    a, b = norm(rows), norm(gold)
    return a == b if ordered else sorted(a, key=repr) == sorted(b, key=repr)


def sql_reward(text: str, result: sandbox.Result | None, *, gold_query: str,
               gold_rows: Sequence[Sequence], schema: Mapping[str, Sequence[str]],
               weights: SQLRewardWeights = SQLRewardWeights()) -> SQLReward:
    """Reasoning-SQL's partial rewards (arXiv:2503.23157; module docstring) of a response.

    Args:
      text: the model's response (the query is its last `<sql>` block).
      result: the sandbox's run of that query (None when there was no query to run).
      gold_query, gold_rows: the reference query and its rows.
      schema: table -> columns, for schema linking.
    """
    query = extract_query(text)
    ran = result is not None and result.ok and query is not None
    execution = float(ran and rows_match(result.rows, gold_rows,
                                         ordered="order by" in " ".join(sql_tokens(gold_query))))
    parts = dict(execution=execution, syntax=float(ran),
                 schema=jaccard(schema_items(query, schema), schema_items(gold_query, schema))
                 if query else 0.0,
                 ngram=jaccard(bigrams(query), bigrams(gold_query)) if query else 0.0,
                 format=float(format_ok(text)))
    total = sum(getattr(weights, k) * v for k, v in parts.items())
    return SQLReward(**parts, total=total)


# ----------------------------------------------------------------------------- the data


SCHEMA = {"employees": ("id", "name", "dept", "city", "age", "salary"),
          "departments": ("name", "floor", "budget")}


def build_database(seed: int = 0, *, employees: int = 24) -> str:
    """The synthetic database as an SQL script (CREATE TABLE and INSERT statements):
    `employees` (one per name in `NAMES`, at most 24) and `departments`."""
    if not 1 <= employees <= len(NAMES):
        raise ValueError(f"build_database: employees must be in [1, {len(NAMES)}], got "
                         f"{employees!r}")
    rng = np.random.default_rng([seed, 11])
    lines = ["CREATE TABLE departments (name TEXT PRIMARY KEY, floor INTEGER, budget INTEGER);",
             "CREATE TABLE employees (id INTEGER PRIMARY KEY, name TEXT, dept TEXT, "
             "city TEXT, age INTEGER, salary INTEGER);"]
    floors = rng.permutation(len(DEPARTMENTS)) + 1
    for d, floor in zip(DEPARTMENTS, floors):
        lines.append(f"INSERT INTO departments VALUES ('{d}', {floor}, "
                     f"{int(rng.integers(10, 100)) * 1000});")
    for i, name in enumerate(NAMES[:employees]):
        lines.append(f"INSERT INTO employees VALUES ({i + 1}, '{name}', "
                     f"'{DEPARTMENTS[rng.integers(len(DEPARTMENTS))]}', "
                     f"'{CITIES[rng.integers(len(CITIES))]}', {int(rng.integers(20, 60))}, "
                     f"{int(rng.integers(30, 90)) * 100});")
    return "\n".join(lines) + "\n"


def _question(kind: str, rng: np.random.Generator, names: Sequence[str]) -> tuple[str, str]:
    city = CITIES[rng.integers(len(CITIES))]
    dept = DEPARTMENTS[rng.integers(len(DEPARTMENTS))]
    if kind == "count_city":
        return (f"How many employees live in {city}?",
                f"SELECT COUNT(*) FROM employees WHERE city = '{city}'")
    if kind == "names_older":
        n = int(rng.integers(25, 55))
        return (f"Which employees are older than {n}?",
                f"SELECT name FROM employees WHERE age > {n}")
    if kind == "max_salary_dept":
        return (f"What is the highest salary in {dept}?",
                f"SELECT MAX(salary) FROM employees WHERE dept = '{dept}'")
    if kind == "count_dept_city":
        return (f"How many employees of {dept} live in {city}?",
                f"SELECT COUNT(*) FROM employees WHERE dept = '{dept}' AND city = '{city}'")
    if kind == "floor_of":
        name = names[rng.integers(len(names))]
        return (f"On which floor does {name} work?",
                "SELECT departments.floor FROM employees JOIN departments ON employees.dept = "
                f"departments.name WHERE employees.name = '{name}'")
    raise ValueError(f"unknown question template {kind!r}; expected one of {TEMPLATES}")


def questions(n: int, *, seed: int, templates: Sequence[str] = TEMPLATES,
              employees: int = 24) -> list[PromptWithAnswer]:
    """`n` questions about `build_database(employees=...)`, each with its gold query as
    the answer, templates drawn uniformly."""
    bad = [t for t in templates if t not in TEMPLATES]
    if not templates or bad:
        raise ValueError(f"questions: templates must be a non-empty subset of {TEMPLATES}, "
                         f"got {tuple(templates)!r}")
    rng = np.random.default_rng([seed, 13])
    names = NAMES[:employees]
    return [PromptWithAnswer(prompt=q, answer=sql) for q, sql in
            (_question(templates[rng.integers(len(templates))], rng, names) for _ in range(n))]


def gold_rows(script: str, query: str) -> tuple[tuple, ...]:
    """Rows of a gold query (ours, not the model's: run in-process on an in-memory copy)."""
    con = sqlite3.connect(":memory:")
    try:
        con.executescript(script)
        return tuple(tuple(r) for r in con.execute(query))
    finally:
        con.close()


# ----------------------------------------------------------------------------- the environment


@dataclasses.dataclass(frozen=True, kw_only=True)
class SQLEnvConfig:
    """Attributes:
      seed, employees: the database (`build_database`).
      weights: the partial rewards' weights; `SQLRewardWeights(syntax=0, schema=0,
        ngram=0, format=0)` is execution match alone.
      limits: the sandbox limits of one query.
      max_workers: queries run at once.
      isolation: the sandbox's isolation mode.
    """

    seed: int = 0
    employees: int = 24
    weights: SQLRewardWeights = SQLRewardWeights()
    limits: sandbox.Limits = sandbox.Limits(wall_s=5.0, cpu_s=2.0, memory_mb=256,
                                            max_processes=4, output_bytes=16384, disk_mb=4)
    max_workers: int = 8
    isolation: str = "auto"

    def __post_init__(self):
        if not isinstance(self.max_workers, int) or self.max_workers <= 0:
            raise ValueError(f"SQLEnvConfig.max_workers must be a positive int, got "
                             f"{self.max_workers!r}")
        if self.isolation not in ("auto", "namespaces", "rlimits"):
            raise ValueError(f"SQLEnvConfig.isolation must be 'auto', 'namespaces' or "
                             f"'rlimits', got {self.isolation!r}")
        build_database(self.seed, employees=self.employees)  # validates `employees`


class SQLEnv(Environment):
    """Single-turn text-to-SQL on the synthetic database; see the module docstring.

    Records carry `prompt` (the question) and `answer` (the gold query). `render` turns
    the question into the prompt text. Infos: `env/correct` (execution match),
    `env/syntax`, `env/schema`, `env/ngram`, `env/format` (the partial rewards).
    """

    def __init__(self, config: SQLEnvConfig = SQLEnvConfig(), *,
                 render: Callable[[str], str] = lambda q: q):
        self.config, self.render = config, render
        self.script = build_database(config.seed, employees=config.employees)
        self._gold: dict[str, tuple[tuple, ...]] = {}

    def reset(self, record: Mapping[str, Any]) -> str:
        require_fields(record, ("prompt", "answer"), "SQLEnv")
        return self.render(record["prompt"])

    def gold(self, query: str) -> tuple[tuple, ...]:
        if query not in self._gold:
            try:
                self._gold[query] = gold_rows(self.script, query)
            except sqlite3.Error as e:
                raise ValueError(f"SQLEnv: the record's gold query {query!r} fails: {e}") from e
        return self._gold[query]

    def step(self, turns: Sequence[Turn]) -> list[Transition]:
        cfg = self.config
        queries = [extract_query(t.text) for t in turns]
        todo = [i for i, q in enumerate(queries) if q is not None]
        ran = sandbox.run_many([sandbox.SQLProgram(query=queries[i], schema=self.script)
                                for i in todo], cfg.limits, max_workers=cfg.max_workers,
                               isolation=cfg.isolation) if todo else []
        results: list[sandbox.Result | None] = [None] * len(turns)
        for i, res in zip(todo, ran):
            results[i] = res
        out = []
        for t, res in zip(turns, results):
            gold = t.record["answer"]
            r = sql_reward(t.text, res, gold_query=gold, gold_rows=self.gold(gold),
                           schema=SCHEMA, weights=cfg.weights)
            out.append(Transition(observation="", reward=r.total, done=True,
                                  info={"env/correct": r.execution, "env/syntax": r.syntax,
                                        "env/schema": r.schema, "env/ngram": r.ngram,
                                        "env/format": r.format}))
        return out


def sql_trace(record: PromptWithAnswer) -> str:
    """The SFT completion for a question: its gold query in a block."""
    return f"{SQL_OPEN}{record.answer}{SQL_CLOSE}"
