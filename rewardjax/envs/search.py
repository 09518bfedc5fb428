"""A local search tool: BM25 over a shipped document collection (simulated web search).

Search-R1 ("Search-R1: Training LLMs to Reason and Leverage Search Engines with
Reinforcement Learning", arXiv:2503.09516) trains a policy to interleave search calls
with its reasoning against a retriever over a fixed corpus, with the outcome (exact
match) as the only reward. SearchGym ("SearchGym: Bootstrapping Real-World Search Agents
via Cost-Effective and High-Fidelity Environment Simulation", arXiv:2601.14615) replaces
the web by a generated knowledge base and its aligned document corpus, so every question
is answerable from the corpus and rollouts are cheap and reproducible. Here:

* the corpus is a fictional encyclopedia shipped with the package
  (`assets/data/search/documents.jsonl`, written by `make_documents`): one short
  document per (entity, attribute), e.g. "Karul color: red". The entities and values
  are random, so a model cannot know an answer without retrieving it;
* the retriever is Okapi BM25 (`BM25`; Robertson & Zaragoza, "The Probabilistic
  Relevance Framework: BM25 and Beyond", 2009) over lower-cased word tokens, with
  Lucene's non-negative idf;
* a turn that ends with `<call>search: <query></call>` is answered with the top-k
  documents, numbered: `<out>1. doc 2. doc</out>\\n`; a turn without a call is the
  final answer, rewarded 1 when its last `Answer: <text>` line matches the record's
  answer after `normalize_answer` (SQuAD-style exact match);
* `search=False` answers every call `<out>error: no search</out>`: the same recipe
  without the tool.

`info` counts `env/calls`, `env/hit` (a call retrieved the record's gold document in
its top k), `env/answer_parsed` and `env/correct`.
"""

from __future__ import annotations

import dataclasses
import json
import re
import string
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from rewardjax.envs.base import Environment, Transition, Turn, require_fields
from rewardjax.envs.calculator import CALL_CLOSE, CALL_OPEN, OUT_CLOSE, OUT_OPEN, parse_calls

TOOL = "search"
ANSWER_PREFIX = "Answer: "
ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "color": ("red", "blue", "green", "black", "white", "gold", "gray", "pink"),
    "pet": ("cat", "dog", "fox", "owl", "bear", "wolf", "frog", "crow"),
    "age": tuple(str(a) for a in range(10, 100)),
}
_WORD = re.compile(r"\w+")


def tokenize(text: str) -> list[str]:
    """BM25's terms: lower-cased runs of word characters."""
    return _WORD.findall(text.lower())


class BM25:
    """Okapi BM25 scores of a fixed collection (Robertson & Zaragoza, 2009).

    score(q, d) = sum over terms t of q: idf(t) * tf(t, d) * (k1 + 1)
                  / (tf(t, d) + k1 * (1 - b + b * |d| / avgdl)),
    idf(t) = ln(1 + (N - n(t) + 0.5) / (n(t) + 0.5)) (Lucene's form, never negative).
    A query term repeated counts once per occurrence; an unknown term scores 0.
    """

    def __init__(self, documents: Sequence[str], *, k1: float = 1.2, b: float = 0.75):
        if not documents:
            raise ValueError("BM25: the collection is empty")
        if not k1 >= 0 or not 0 <= b <= 1:
            raise ValueError(f"BM25: k1 = {k1!r} must be >= 0 and b = {b!r} in [0, 1]")
        self.k1, self.b = k1, b
        docs = [tokenize(d) for d in documents]
        self.vocab: dict[str, int] = {}
        for d in docs:
            for t in d:
                self.vocab.setdefault(t, len(self.vocab))
        tf = np.zeros((len(docs), len(self.vocab)), np.float32)
        for i, d in enumerate(docs):
            for t in d:
                tf[i, self.vocab[t]] += 1
        lengths = tf.sum(1)
        n = (tf > 0).sum(0)
        self.idf = np.log1p((len(docs) - n + 0.5) / (n + 0.5))
        norm = k1 * (1 - b + b * lengths / lengths.mean())
        self.weights = tf * (k1 + 1) / (tf + norm[:, None])  # [N, V]

    def scores(self, query: str) -> np.ndarray:
        """[N] the BM25 score of every document for `query`."""
        ids = [self.vocab[t] for t in tokenize(query) if t in self.vocab]
        if not ids:
            return np.zeros(self.weights.shape[0], np.float32)
        return (self.weights[:, ids] * self.idf[ids]).sum(1)

    def top_k(self, query: str, k: int) -> list[int]:
        """The k best documents' indices, best first; ties by collection order. Documents
        that share no term with the query are left out."""
        if k < 1:
            raise ValueError(f"BM25.top_k: k = {k!r}, expected >= 1")
        s = self.scores(query)
        order = np.argsort(-s, kind="stable")[:k]
        return [int(i) for i in order if s[i] > 0]


def normalize_answer(text: str) -> str:
    """SQuAD's answer normalization: lower case, no punctuation, no articles, single
    spaces."""
    text = "".join(c for c in text.lower() if c not in string.punctuation)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def extract_answer(text: str) -> str | None:
    """The text after the last `Answer:` (to the end of its line), or None."""
    hits = [line for line in text.splitlines() if line.strip().startswith(ANSWER_PREFIX.strip())]
    if not hits:
        return None
    return hits[-1].strip()[len(ANSWER_PREFIX.strip()):].strip()


# ---------------------------------------------------------------------------------------
# The shipped collection and its questions.

DOCUMENTS = Path("assets") / "data" / "search" / "documents.jsonl"


def make_documents(*, seed: int = 0, entities: int = 256, tokenizer=None) -> list[dict[str, str]]:
    """The fictional encyclopedia (a SearchGym-style generated fact base, arXiv:2601.14615):
    `entities` made-up names (consonant-vowel-consonant-vowel-consonant, e.g. "Dabuk"),
    each with one random value per attribute of `ATTRIBUTES`, one document each:
    {"id", "entity", "attribute", "value", "text"}.

    `tokenizer` (default: the package's) keeps only names that are two tokens after a
    space, so a small model copies a name from the question into its query as easily as
    a number."""
    if tokenizer is None:
        from rewardjax.data.tokenizer import default_tokenizer
        tokenizer = default_tokenizer()
    consonants, vowels = "bdfgklmnprstvz", "aeiou"
    candidates = sorted(
        name for name in (f"{a}{b}{c}{d}{e}".capitalize() for a in consonants for b in vowels
                          for c in consonants for d in vowels for e in consonants)
        if len(tokenizer(" " + name, add_special_tokens=False)["input_ids"]) == 2)
    if len(candidates) < entities:
        raise ValueError(f"make_documents: {entities} entities asked, the tokenizer allows "
                         f"{len(candidates)} two-token names")
    rng = np.random.default_rng(seed)
    names = [candidates[i] for i in rng.permutation(len(candidates))[:entities]]
    docs = []
    for name in names:
        for attribute, values in ATTRIBUTES.items():
            value = str(values[int(rng.integers(len(values)))])
            docs.append({"id": f"{name}/{attribute}", "entity": name, "attribute": attribute,
                         "value": value, "text": f"{name} {attribute}: {value}"})
    return docs


def load_documents(path: str | Path | None = None) -> list[dict[str, str]]:
    """The collection at `path` (default: the shipped one), one JSON object per line with
    `id`, `entity`, `attribute`, `value` and `text`."""
    path = Path(path) if path else Path(str(resources.files("rewardjax"))) / DOCUMENTS
    docs = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        doc = json.loads(line)
        missing = {"id", "entity", "attribute", "value", "text"} - set(doc)
        if missing:
            raise ValueError(f"{path}:{n}: document lacks {sorted(missing)}")
        docs.append(doc)
    return docs


def question(doc: Mapping[str, str]) -> str:
    """The question a document answers: "What is the color of Karul?"."""
    return f"What is the {doc['attribute']} of {doc['entity']}?"


def split_documents(docs: Sequence[Mapping[str, str]], *, seed: int,
                    sizes: Mapping[str, int]) -> dict[str, list[Mapping[str, str]]]:
    """Disjoint random subsets of the documents by name (e.g. {"sft": 384, "rl": 256,
    "test": 128}): questions about one split's facts are never trained on in another."""
    if sum(sizes.values()) > len(docs):
        raise ValueError(f"split_documents: sizes {dict(sizes)} need {sum(sizes.values())} "
                         f"documents; the collection has {len(docs)}")
    order = np.random.default_rng(seed).permutation(len(docs))
    out, start = {}, 0
    for name, size in sizes.items():
        out[name] = [docs[i] for i in order[start:start + size]]
        start += size
    return out


def records(docs: Sequence[Mapping[str, str]]) -> list[dict[str, str]]:
    """The environment's records: `prompt` (the question), `answer` and `doc_id`."""
    return [{"prompt": question(d), "answer": d["value"], "doc_id": d["id"]} for d in docs]


def search_query(doc: Mapping[str, str]) -> str:
    """The query a trace writes for a document's question: entity and attribute."""
    return f"{doc['entity']} {doc['attribute']}"


def search_trace(doc: Mapping[str, str], observation: str) -> str:
    """A worked response: the search call, `observation` (the tool's answer), the answer."""
    return (f"{CALL_OPEN}{TOOL}: {search_query(doc)}{CALL_CLOSE}{OUT_OPEN}{observation}"
            f"{OUT_CLOSE}\n{ANSWER_PREFIX}{doc['value']}")


# ---------------------------------------------------------------------------------------
# The environment.


@dataclasses.dataclass(frozen=True, kw_only=True)
class SearchConfig:
    """Attributes:
      search: run queries (False: every call answers an error, the no-search baseline).
      k: documents returned per query.
      max_calls: calls a rollout may make; later ones answer an error.
      k1, b: BM25's parameters.
    """

    search: bool = True
    k: int = 2
    max_calls: int = 2
    k1: float = 1.2
    b: float = 0.75

    def __post_init__(self):
        for name in ("k", "max_calls"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"SearchConfig.{name} must be an int >= 1, got {v!r}")


class SearchEnv(Environment):
    """Question answering with a BM25 search tool, as Search-R1 (arXiv:2503.09516) over a
    SearchGym-style simulated corpus (arXiv:2601.14615); see the module docstring.

    Records carry `prompt` (the question), `answer` and `doc_id` (the gold document's
    `id`, for the retrieval hit rate); `render` turns the question into the prompt text.
    `end_texts` are the decoded eos tokens, cut from the answer (the driver keeps special
    tokens in the text, and "red<|im_end|>" would not match "red").
    """

    def __init__(self, documents: Sequence[Mapping[str, str]],
                 config: SearchConfig = SearchConfig(), *,
                 render: Callable[[str], str] = lambda q: q, end_texts: Sequence[str] = ()):
        self.config, self.render = config, render
        self.end_texts = tuple(t for t in end_texts if t)
        self.documents = list(documents)
        self.index = BM25([d["text"] for d in self.documents], k1=config.k1, b=config.b)

    def reset(self, record: Mapping[str, Any]) -> str:
        require_fields(record, ("prompt", "answer", "doc_id"), "SearchEnv")
        return self.render(record["prompt"])

    def retrieve(self, query: str) -> list[Mapping[str, str]]:
        """The top-k documents for `query` (raises on an empty query)."""
        if not tokenize(query):
            raise ValueError(f"SearchEnv.retrieve: query {query!r} has no words")
        return [self.documents[i] for i in self.index.top_k(query, self.config.k)]

    def observation(self, query: str) -> str:
        """What a call with `query` is answered (without the tags)."""
        return self._answer(query)[0]

    def _answer(self, query: str) -> tuple[str, list[Mapping[str, str]]]:
        """(observation text, retrieved documents) of one call."""
        if not tokenize(query):
            return "error: empty query", []
        docs = self.retrieve(query)
        return (" ".join(f"{i}. {d['text']}" for i, d in enumerate(docs, 1)) if docs
                else "no results"), docs

    def step(self, turns: Sequence[Turn]) -> list[Transition]:
        return [self._step(t) for t in turns]

    def _step(self, t: Turn) -> Transition:
        calls = parse_calls(t.text)
        if not calls:
            text = t.text
            for end in self.end_texts:
                text = text.replace(end, "")
            answer = extract_answer(text)
            correct = (answer is not None and
                       normalize_answer(answer) == normalize_answer(str(t.record["answer"])))
            return Transition(observation="", reward=float(correct), done=True,
                              info={"env/correct": float(correct),
                                    "env/answer_parsed": float(answer is not None)})
        name, query = calls[-1].name, calls[-1].arguments["code"]
        previous = sum(len(parse_calls(x)) for x in t.transcript[::2])
        info = {"env/calls": 1.0}
        if name != TOOL:
            text, info = f"error: unknown tool {name}", {"env/unknown_tool": 1.0}
        elif previous >= self.config.max_calls:
            text, info = "error: too many calls", {"env/over_calls": 1.0}
        elif not self.config.search:
            text = "error: no search"
        else:
            text, docs = self._answer(query)
            info["env/hit"] = float(any(d["id"] == t.record["doc_id"] for d in docs))
        return Transition(observation=f"{OUT_OPEN}{text}{OUT_CLOSE}\n", reward=0.0, done=False,
                          info=info)


if __name__ == "__main__":  # writes the shipped collection
    out = Path(str(resources.files("rewardjax"))) / DOCUMENTS
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(json.dumps(d) + "\n" for d in make_documents()))
    print(f"wrote {out}")
