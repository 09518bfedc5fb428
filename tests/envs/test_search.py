"""The BM25 search environment: scores by hand, ranking, the shipped collection, and the
environment on scripted turns."""

import math

import numpy as np
import pytest

from rewardjax.envs import search
from rewardjax.envs.base import Turn


def test_bm25_scores_equal_a_hand_computation():
    index = search.BM25(["a b", "a c c", "d"], k1=1.2, b=0.75)
    # "c": in 1 of 3 documents; document 1 has it twice, length 3, average length 2.
    idf_c = math.log(1 + (3 - 1 + 0.5) / (1 + 0.5))
    tf_part = 2 * 2.2 / (2 + 1.2 * (1 - 0.75 + 0.75 * 3 / 2))
    np.testing.assert_allclose(index.scores("c"), [0, idf_c * tf_part, 0], rtol=1e-6)
    # "a b": a in 2 documents, b in 1; document 0 (length 2 = average) has each once.
    idf_a, idf_b = (math.log(1 + (3 - n + 0.5) / (n + 0.5)) for n in (2, 1))
    one = 1 * 2.2 / (1 + 1.2)
    a_in_1 = 2.2 / (1 + 1.2 * (0.25 + 0.75 * 1.5))
    np.testing.assert_allclose(index.scores("A, b!"), [(idf_a + idf_b) * one, idf_a * a_in_1, 0],
                               rtol=1e-6)
    assert index.top_k("a b", 3) == [0, 1]  # document 2 shares no term: left out
    assert index.top_k("zebra", 2) == []


def test_bm25_rejects_bad_settings():
    with pytest.raises(ValueError, match="empty"):
        search.BM25([])
    with pytest.raises(ValueError, match="b = 2"):
        search.BM25(["a"], b=2)
    with pytest.raises(ValueError, match="k = 0"):
        search.BM25(["a"]).top_k("a", 0)
    with pytest.raises(ValueError, match="SearchConfig.k"):
        search.SearchConfig(k=0)


def test_the_shipped_collection_is_make_documents_output():
    docs = search.load_documents()
    assert docs == search.make_documents(seed=0)
    assert len(docs) == 256 * len(search.ATTRIBUTES)
    assert len({d["entity"] for d in docs}) == 256


def test_entity_and_attribute_retrieve_the_gold_document_first():
    docs = search.load_documents()
    env = search.SearchEnv(docs)
    assert all(env.retrieve(search.search_query(d))[0]["id"] == d["id"] for d in docs)
    # The entity alone ties its three documents: the attribute decides which comes first.
    d = docs[4]
    assert {x["entity"] for x in env.retrieve(d["entity"])} == {d["entity"]}


def test_splits_are_disjoint_and_sized():
    docs = search.load_documents()
    split = search.split_documents(docs, seed=0, sizes={"sft": 10, "rl": 5, "test": 3})
    ids = [d["id"] for part in split.values() for d in part]
    assert [len(p) for p in split.values()] == [10, 5, 3] and len(set(ids)) == 18
    with pytest.raises(ValueError, match="need 1000"):
        search.split_documents(docs, seed=0, sizes={"test": 1000})


def _turn(record, text, transcript=()):
    return Turn(rollout=0, record=record, turn=len(transcript) // 2, text=text,
                transcript=tuple(transcript))


def test_search_env_on_scripted_turns():
    docs = search.load_documents()
    d = docs[7]
    record = search.records([d])[0]
    env = search.SearchEnv(docs, search.SearchConfig(k=2, max_calls=1))
    assert env.reset(record) == search.question(d)
    call = f"<call>search: {d['entity']} {d['attribute']}</call>"
    t = env.step([_turn(record, call)])[0]
    assert not t.done and t.reward == 0
    assert t.observation.startswith(f"<out>1. {d['text']} 2. ")
    assert t.observation.endswith("</out>\n")
    assert t.info == {"env/calls": 1.0, "env/hit": 1.0}
    miss = env.step([_turn(record, "<call>search: zebra</call>")])[0]
    assert miss.observation == "<out>no results</out>\n" and miss.info["env/hit"] == 0.0
    over = env.step([_turn(record, call, (call, t.observation))])[0]
    assert over.observation == "<out>error: too many calls</out>\n"
    unknown = env.step([_turn(record, "<call>python: print(1)</call>")])[0]
    assert unknown.observation == "<out>error: unknown tool python</out>\n"
    empty = env.step([_turn(record, "<call>search: ?!</call>")])[0]
    assert empty.observation == "<out>error: empty query</out>\n"
    right, wrong, none = env.step([_turn(record, f"Answer: The {d['value'].upper()}."),
                                   _turn(record, "Answer: nothing"), _turn(record, "I think")])
    assert (right.done, right.reward, right.info) == (True, 1.0, {"env/correct": 1.0,
                                                                  "env/answer_parsed": 1.0})
    assert (wrong.reward, none.reward, none.info["env/answer_parsed"]) == (0.0, 0.0, 0.0)
    ended = search.SearchEnv(docs, end_texts=["<|im_end|>"])
    assert ended.step([_turn(record, f"Answer: {d['value']}<|im_end|>")])[0].reward == 1.0
    assert env.step([_turn(record, f"Answer: {d['value']}<|im_end|>")])[0].reward == 0.0
    no_search = search.SearchEnv(docs, search.SearchConfig(search=False))
    assert no_search.step([_turn(record, call)])[0].observation == "<out>error: no search</out>\n"
    with pytest.raises(KeyError, match="doc_id"):
        env.reset({"prompt": "q", "answer": "a"})


def test_trace_is_what_the_environment_answers():
    docs = search.load_documents()
    env = search.SearchEnv(docs)
    d = docs[10]
    trace = search.search_trace(d, env.observation(search.search_query(d)))
    call, rest = trace.split("</call>")
    t = env.step([_turn(search.records([d])[0], call + "</call>")])[0]
    assert rest.startswith(t.observation)
    assert search.extract_answer(rest) == d["value"]
