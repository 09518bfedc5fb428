"""A search agent: a policy learns to query a local BM25 index before it answers.

Paper: "Search-R1: Training LLMs to Reason and Leverage Search Engines with Reinforcement
Learning" (arXiv:2503.09516): multi-turn rollouts interleave the policy's search calls
with the retrieved documents (masked out of the loss), the only reward is the answer's
exact match, and RL raises accuracy above the start and above the same recipe without
retrieval. The search engine is simulated as in SearchGym ("SearchGym: Bootstrapping
Real-World Search Agents via Cost-Effective and High-Fidelity Environment Simulation",
arXiv:2601.14615): a generated fact base and its aligned corpus behind a local index.

What it reproduces: held-out exact match with search after GRPO is above its SFT start
and above the same recipe run without search (calls answer `error: no search`), both
arms from one warm start in the same run; the retrieval hit rate says whether the
queries find the gold document.

Deviations of the `tiny` preset: grpo_arith's ~1M-parameter model and 500-step warm
start; the corpus is the shipped fictional encyclopedia (`rewardjax.envs.search`: 768
one-line documents on 256 made-up entities, BM25 top-2), questions "What is the
<attribute> of <entity>?" on facts split three ways (SFT / RL / held-out), so answers
cannot be memorised; half of the SFT traces search (query "<entity> <attribute>") and the
rest answer directly, so greedy decoding after SFT guesses and RL must learn to search
(as tool_grpo); the retrieved documents are left out of the SFT loss as out of the RL
loss; single-hop questions; 30 GRPO steps at lr 1e-4. Findings:
docs/experiments/search_agent.md. `paper` runs the recipe on a local checkpoint (no SFT).

    python experiments/search_agent.py --preset tiny
    python experiments/search_agent.py --preset smoke
"""

import dataclasses
import time
from pathlib import Path

import numpy as np

from rewardjax import experiment
from rewardjax.data.encoding import render_prompt
from rewardjax.data.records import SFTExample
from rewardjax.envs import search as search_lib
from rewardjax.envs.search import SearchConfig, SearchEnv
from rewardjax.envs.training import grpo_arm, warm_started_agent
from rewardjax.recipes import BackboneConfig, SFTConfig
from rewardjax.recipes.rl_arith import TINY_GRPO, TINY_RL_MODEL, TINY_RL_SFT, plot_arms
from rewardjax.sharding import MeshConfig
from rewardjax.train.metrics import write_result
from rewardjax.train.rl import RLConfig
from rewardjax.train.state import OptimizerConfig

ARMS = ("search", "no_search")


@dataclasses.dataclass(frozen=True, kw_only=True)
class SearchAgentConfig:
    """Attributes:
      model, mesh, sft, sft_buckets: as `RLRecipe`'s.
      documents: the collection's path (None: the shipped one).
      splits: facts (documents) per split: "sft" (traces), "rl" (GRPO prompts) and
        "test" (held-out questions), disjoint.
      search_fraction: share of SFT traces that search (the rest answer directly).
      search_by_fact: draw search-or-direct once per SFT fact (False: per example, so a
        fact has both kinds of trace and its answer can be recalled instead of copied).
      observation_weight: SFT loss weight of the retrieved text (0: left out).
      search: the environment (the no-search arm sets `search=False`).
      rl, rl_optimizer: GRPO of each arm (`rl.max_new_tokens`: a rollout's response slots).
      max_turns, turn_tokens, observation_tokens: the rollout budgets.
      arms: which of "search" and "no_search" run.
    """

    model: BackboneConfig = TINY_RL_MODEL
    mesh: MeshConfig = MeshConfig()
    sft: SFTConfig = TINY_RL_SFT
    sft_buckets: tuple[int, ...] = (96,)
    documents: str | None = None
    splits: tuple[tuple[str, int], ...] = (("sft", 384), ("rl", 256), ("test", 128))
    search_fraction: float = 0.5
    search_by_fact: bool = False
    observation_weight: float = 0.0
    search: SearchConfig = SearchConfig()
    rl: RLConfig = dataclasses.replace(TINY_GRPO, prompts_per_step=8, max_new_tokens=132,
                                       prompt_length=64)
    rl_optimizer: OptimizerConfig = OptimizerConfig(lr=1e-4, warmup_steps=5, total_steps=30,
                                                    min_lr_ratio=1.0)
    max_turns: int = 3
    turn_tokens: int = 24
    observation_tokens: int = 28
    arms: tuple[str, ...] = ARMS
    seed: int = 0

    def __post_init__(self):
        if not 0.0 <= self.search_fraction <= 1.0:
            raise ValueError(f"search_fraction = {self.search_fraction!r}: expected a share "
                             "in [0, 1]")
        if not self.observation_weight >= 0:
            raise ValueError(f"observation_weight = {self.observation_weight!r}: expected >= 0")
        splits = tuple((str(n), int(s)) for n, s in self.splits)
        if sorted(n for n, _ in splits) != ["rl", "sft", "test"] or any(s < 1 for _, s in splits):
            raise ValueError(f"splits = {self.splits!r}: expected positive sizes for exactly "
                             "'sft', 'rl' and 'test'")
        object.__setattr__(self, "splits", splits)
        object.__setattr__(self, "arms", tuple(self.arms))
        if not self.arms or any(a not in ARMS for a in self.arms):
            raise ValueError(f"arms = {self.arms!r}: expected a non-empty subset of {ARMS}")


def sft_traces(cfg: SearchAgentConfig, env: SearchEnv,
               docs: list) -> list[SFTExample]:
    """`cfg.sft.num_examples` questions on the SFT facts, cycled: a share
    `search_fraction` with a search trace (the real top-k as its observation), the rest
    with the bare answer; with `search_by_fact` a fact always gets the same kind."""
    out = []
    for i in range(cfg.sft.num_examples):
        doc = docs[i % len(docs)]
        rng = np.random.default_rng([cfg.seed, i % len(docs) if cfg.search_by_fact else i, 11])
        completion = (search_lib.search_trace(doc, env.observation(search_lib.search_query(doc)))
                      if rng.random() < cfg.search_fraction
                      else f"{search_lib.ANSWER_PREFIX}{doc['value']}")
        out.append(SFTExample(prompt=search_lib.question(doc), completion=completion))
    return out


def run(cfg: SearchAgentConfig, out: Path) -> dict:
    start = time.time()
    out = Path(out)
    documents = search_lib.load_documents(cfg.documents)
    split = search_lib.split_documents(documents, seed=cfg.seed, sizes=dict(cfg.splits))
    traces = sft_traces(cfg, SearchEnv(documents, cfg.search), split["sft"])
    backbone, params, eos, rollout = warm_started_agent(cfg, traces, out)
    tok = backbone.tokenizer
    render = lambda q: render_prompt(tok, q)  # noqa: E731
    envs = {arm: SearchEnv(documents, dataclasses.replace(cfg.search, search=arm == "search"),
                           render=render, end_texts=[tok.decode([i]) for i in eos])
            for arm in cfg.arms}
    held_out, pool = search_lib.records(split["test"]), search_lib.records(split["rl"])
    result: dict = {}
    for arm in cfg.arms:
        before, after = grpo_arm(params, backbone=backbone, env=envs[arm], rollout=rollout,
                                 rl=cfg.rl, optimizer=cfg.rl_optimizer, pool=pool,
                                 held_out=held_out, eos=eos, out_dir=out, name=arm)
        for stage, m in (("sft_", before), ("", after)):
            result[f"em_{stage}{arm}"] = round(m["pass1"], 4)
            result[f"calls_{stage}{arm}"] = round(m.get("env/calls", 0.0), 3)
            if arm == "search":
                result[f"hit_{stage}{arm}"] = round(m.get("env/hit", 0.0), 3)
    if "search" in cfg.arms:
        result["gain_search"] = round(result["em_search"] - result["em_sft_search"], 4)
    if len(cfg.arms) == 2:
        result["search_vs_no_search"] = round(result["em_search"] - result["em_no_search"], 4)
    plot_arms(out, list(cfg.arms), ["reward/mean", "accuracy", "turns/mean", "env/calls"],
              out / "rl_curves.png", title="GRPO with a local BM25 search tool (Search-R1-style)")
    result["test_questions"] = len(held_out)
    result["minutes"] = round((time.time() - start) / 60, 2)
    write_result(out, result)
    return result


HEADLINE = ("em_sft_search", "em_search", "gain_search", "em_no_search", "search_vs_no_search")

PRESETS = {
    "tiny": SearchAgentConfig(),
    "paper": SearchAgentConfig(
        model=BackboneConfig(hf_path="checkpoints/qwen2.5-7b-instruct", compute_dtype="bfloat16",
                             remat="full"),
        sft=SFTConfig(steps=0), sft_buckets=(1024,),
        search=SearchConfig(k=3, max_calls=4),
        rl=RLConfig(steps=200, prompts_per_step=32, group_size=8, max_new_tokens=1024,
                    prompt_length=512, epochs=1, minibatches=1, micro_batches=32,
                    advantage="grpo", reduction="token_mean", kl_coef=0.0),
        rl_optimizer=OptimizerConfig(lr=1e-6, total_steps=200, min_lr_ratio=1.0),
        max_turns=5, turn_tokens=256, observation_tokens=128),
}
# Every stage in seconds (SFT, evaluation with search, GRPO for both arms, curves,
# RESULT); its figures measure nothing.
PRESETS["smoke"] = dataclasses.replace(
    PRESETS["tiny"], model=dataclasses.replace(TINY_RL_MODEL, num_layers=1),
    sft=dataclasses.replace(TINY_RL_SFT, steps=10), splits=(("sft", 64), ("rl", 16), ("test", 8)),
    rl=dataclasses.replace(PRESETS["tiny"].rl, steps=2, prompts_per_step=2, group_size=4))


if __name__ == "__main__":
    experiment.main(PRESETS, run, description=__doc__)
