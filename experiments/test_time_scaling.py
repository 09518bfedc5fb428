"""Test-time scaling: accuracy against compute for voting, best-of-N and PRM-guided search.

Paper: "Scaling LLM Test-Time Compute Optimally can be More Effective than Scaling
Model Parameters" (Snell et al., arXiv:2408.03314), as implemented by Hugging Face's
search-and-learn: majority vote (arXiv:2203.11171), ORM and PRM best-of-N, weighted
vote, PRM beam search and DVTS, plus early rejection by partial PRM scores
(arXiv:2508.01969) and MCTS over steps with a PRM value (RAP arXiv:2305.14992,
ReST-MCTS* arXiv:2406.03816). Each method runs at N ∈ {1, 2, 4, 8, 16, 32}; accuracy is
plotted against generated tokens and against FLOPs including the scorer.

What it reproduces: with a good PRM, spending N samples through the verifier (best-of-N)
or through search beats self-consistency at the same N; early rejection keeps PRM
best-of-N's accuracy for fewer generated tokens.

How `tiny` deviates: the policy is the 2-layer width-64 SFT warm start of `process_rm`
on 2-4-step arithmetic (`recipes.TINY_RM_TASK`) with 10% of 5-step examples, evaluated
on 5-step test problems at temperature 1.3, where few samples are right line by line
but most problems have one (at T = 1 majority vote is already 0.96; on 6-step problems
no sample is right line by line: docs/experiments/test_time_scaling.md). The PRM and
ORM are initialised from the policy and trained as in `process_rm` (step BCE, solutions
cut after their first error) on 2-6-step task solutions plus the policy's own samples
(same temperature) on 4-6-step training problems labelled by the task's first-error
check (PRM800K-style labels of policy samples, arXiv:2305.20050), plus copies of half of
the right task solutions with a wrong (empty or off-by-one/two) answer line labelled wrong
there, so the answer line is checked like any step; MCTS runs up to
N = 16 simulations. FLOPs are 2 x parameters per token for policy and scorer. The
`paper` preset points at a local policy and a local PRM directory (Math-Shepherd's
step-tag causal LM read-out) on the default arithmetic task.

    python experiments/test_time_scaling.py --preset tiny
    python experiments/test_time_scaling.py --preset smoke
"""

from __future__ import annotations

import dataclasses
import functools
import json
import time
from pathlib import Path

import jax
import numpy as np

from rewardjax import experiment, recipes, search
from rewardjax.data import pipeline as pl
from rewardjax.data.records import StepSolution
from rewardjax.data.synthetic import arithmetic
from rewardjax.data.tokenizer import eos_ids
from rewardjax.rewards.self_reward import auroc
from rewardjax.search.search import SearchResult
from rewardjax.sharding import MeshConfig
from rewardjax.train import make_batch_fn, placement as placement_lib, prm, run_stage, write_result
from rewardjax.train import reward_model as rm
from rewardjax.train.state import OptimizerConfig

METHODS = ("majority", "orm_bon", "prm_bon_min", "prm_bon_last", "weighted", "beam", "dvts",
           "early_rejection", "mcts")


@dataclasses.dataclass(frozen=True, kw_only=True)
class VerifierConfig:
    """The PRM/ORM: trained here (`hf_path` None) or a local PRM directory read by
    `readout` ("step_tag_lm": p(good)/(p(good)+p(bad)) of the token after each step
    tag; "token_class": a two-class token head). Trained here: on `num_synthetic`
    solutions of `task` and on `policy_samples` policy samples for each of
    `num_policy_problems` training problems of `policy_task`, labelled by the task's
    first-error check. `answer_negatives`: the share of the task's right solutions also
    given with a wrong answer line (`answer_line_negatives`)."""

    hf_path: str | None = None
    readout: str = "step_tag_lm"
    good_token: str = "+"
    bad_token: str = "-"
    step_separator: str = "\n"
    steps: int = 400
    orm_steps: int = 200
    batch_size: int = 32
    optimizer: OptimizerConfig = OptimizerConfig(lr=2e-3, warmup_steps=20, total_steps=400)
    num_synthetic: int = 1024
    num_policy_problems: int = 256
    policy_samples: int = 8
    answer_negatives: float = 0.5
    task: arithmetic.ArithmeticConfig = dataclasses.replace(recipes.TINY_RM_TASK, max_steps=6)
    # The policy's own labelled samples come from problems around the evaluation length
    # (at the evaluation temperature): its errors there are what the PRM must catch.
    policy_task: arithmetic.ArithmeticConfig = dataclasses.replace(recipes.TINY_RM_TASK,
                                                                   min_steps=4, max_steps=6)

    def __post_init__(self):
        if not 0.0 <= self.answer_negatives <= 1.0:
            raise ValueError(f"verifier.answer_negatives must be in [0, 1], got "
                             f"{self.answer_negatives}")
        if self.readout not in ("step_tag_lm", "token_class"):
            raise ValueError(f"verifier.readout must be 'step_tag_lm' or 'token_class', got "
                             f"{self.readout!r}")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Config:
    """Attributes:
      task: the policy's SFT task; eval_steps: operations of every evaluation problem;
        long_fraction: share of SFT examples with `long_steps` operations (from the
        train split), so the policy has seen solutions one step shorter than the
        evaluation's (see docs/experiments/test_time_scaling.md).
      num_eval: held-out problems; ns: the budgets N; mcts_max_n: largest MCTS budget.
      expansions: M of beam search and DVTS (min(M, N) at small N).
      temperature: of every sample (evaluation and the PRM's own-sample data).
      step_tokens, max_tokens, max_steps: step-wise generation limits. A step costs every
        row as many slots as the batch's longest step, and at the tiny temperature some
        row's step always runs to `step_tokens`: below max_steps x step_tokens slots most
        rows stop before their answer line.
      reject_steps, reject_below: early rejection after this many steps, below this
        partial (min) PRM score.
    """

    backbone: recipes.BackboneConfig = recipes.BackboneConfig()
    mesh: MeshConfig = MeshConfig()
    task: arithmetic.ArithmeticConfig = recipes.TINY_RM_TASK
    eval_steps: int = 5
    long_steps: int = 5
    long_fraction: float = 0.1
    num_eval: int = 64
    buckets: tuple[int, ...] = (64, 80, 96, 128)
    sft: recipes.SFTConfig = recipes.SFTConfig()
    verifier: VerifierConfig = VerifierConfig()
    ns: tuple[int, ...] = (1, 2, 4, 8, 16, 32)
    mcts_max_n: int = 16
    mcts_expansions: int = 2
    expansions: int = 4
    temperature: float = 1.3
    step_tokens: int = 12
    max_tokens: int = 96
    max_steps: int = 8
    reject_steps: int = 4
    reject_below: float = 0.5
    report_n: int = 16
    seed: int = 0

    def __post_init__(self):
        if not self.ns or any(n < 1 for n in self.ns):
            raise ValueError(f"ns must be positive budgets, got {self.ns}")
        if self.report_n not in self.ns:
            raise ValueError(f"report_n={self.report_n} must be one of ns={self.ns}")


HEADLINE = ("majority_16", "prm_bon_min_16", "beam_16", "early_rejection_16",
            "early_rejection_token_saving")

PRESETS = {
    "tiny": Config(),
    "paper": Config(
        backbone=recipes.BackboneConfig(hf_path="checkpoints/Qwen2.5-Math-7B-Instruct",
                                        compute_dtype="bfloat16"),
        verifier=VerifierConfig(hf_path="checkpoints/math-shepherd-mistral-7b-prm",
                                readout="step_tag_lm", step_separator=" ки"),
        task=arithmetic.ArithmeticConfig(), eval_steps=6, num_eval=500, temperature=1.0,
        buckets=(256, 512, 1024), sft=recipes.SFTConfig(steps=0), ns=(1, 2, 4, 8, 16, 32, 64),
        step_tokens=256, max_tokens=2048, max_steps=40, mcts_max_n=16),
}
PRESETS["smoke"] = dataclasses.replace(
    PRESETS["tiny"], backbone=dataclasses.replace(PRESETS["tiny"].backbone, num_layers=1),
    sft=dataclasses.replace(PRESETS["tiny"].sft, steps=10), num_eval=4, ns=(1, 2),
    report_n=2, mcts_max_n=2, max_tokens=48, max_steps=4,
    verifier=dataclasses.replace(PRESETS["tiny"].verifier, steps=4, orm_steps=2,
                                 num_synthetic=32, num_policy_problems=8, policy_samples=2))


# ----------------------------------------------------------------------------- verifiers


def _split_steps(text: str) -> tuple[str, ...]:
    return tuple(line for line in text.split("\n"))


def policy_step_records(gen, tokenizer, config: Config, key) -> list[StepSolution]:
    """The policy's own solutions of training problems, labelled by the task's
    first-error check (1 before the first wrong line, 0 from it on)."""
    v = config.verifier
    problems = arithmetic.problems(v.num_policy_problems, seed=config.seed + 5,
                                   config=v.policy_task, split="train")
    res = search.sample_n(gen, [p.question for p in problems], key, n=v.policy_samples,
                          tokenizer=tokenizer, answer_fn=arithmetic.extract_answer)
    unparsed = np.mean([a is None for ans in res.answers for a in ans])
    print(f"policy samples on training problems: {unparsed:.2f} without a parseable answer",
          flush=True)
    records = []
    for p, cands in zip(problems, res.candidates):
        for c in cands:
            lines = _split_steps(c.text)
            if not c.finished or any(not line.strip() for line in lines):
                continue
            first = arithmetic.check_steps(p, c.text)
            n = len(lines) if first < 0 else first
            records.append(StepSolution(prompt=p.question, steps=lines,
                                        labels=tuple(float(i < n) for i in range(len(lines)))))
    return records


def answer_line_negatives(records, fraction: float, seed: int, max_value: int
                          ) -> list[StepSolution]:
    """Copies of right solutions whose answer line is wrong: empty (`Answer:`, the
    policy's unfinished answers) or stating another value than the last step's result,
    labelled wrong at that line and right before it.

    The answer line is a step like the others (PRM800K, "Let's Verify Step by Step",
    arXiv:2305.20050, labels every line of a solution, the final answer included), but
    the task's corruptions change step results only, so without these every answer line
    the PRM sees after right steps is right and it learns to pass any answer line. A
    `fraction` of the right solutions (first error -1) get one copy each, half empty,
    half off by 1..2 (kept in 0..max_value, the task's value range)."""
    rng = np.random.default_rng([seed, 14])
    prefix = arithmetic.ANSWER_PREFIX
    out = []
    for r in records:
        if r.first_error != -1 or not r.steps[-1].startswith(prefix) or rng.random() >= fraction:
            continue
        value = arithmetic.extract_answer(r.steps[-1])
        if rng.random() < 0.5 or value is None:
            line = prefix.strip()
        else:
            wrong = [value + d for d in (-2, -1, 1, 2) if 0 <= value + d <= max_value]
            line = f"{prefix}{wrong[int(rng.integers(len(wrong)))]}"
        labels = (1.0,) * (len(r.steps) - 1) + (0.0,)
        out.append(dataclasses.replace(r, steps=r.steps[:-1] + (line,), labels=labels))
    return out


def train_verifier(name, backbone, records, tokenizer, *, model, config: Config, steps: int,
                   last_step_only: bool, key, out, placement):
    v = config.verifier
    records = [r for r in records if len(r.steps) <= config.max_steps + 1]
    pipe = pl.step_pipeline(records, tokenizer, pl.PipelineConfig(
        batch_size=v.batch_size, buckets=config.buckets, seed=config.seed, num_epochs=None,
        drop_remainder=True, max_steps=config.max_steps + 1))
    params = rm.init_reward_model(backbone, key, config=model, head="step")
    loss_fn = functools.partial(prm.step_loss, config=model, last_step_only=last_step_only,
                                **config.backbone.apply_kwargs)
    state, _ = run_stage(params, loss_fn, make_batch_fn(pipe), num_steps=steps, out_dir=out,
                         name=name, optimizer=recipes.sync_schedule(v.optimizer, steps),
                         placement=placement)
    return state.params


def build_scorers(policy, gen, config: Config, out, key) -> dict:
    """{"prm": scorer, "orm": scorer or None}: trained here, or read from a local PRM."""
    v, tok, model = config.verifier, policy.tokenizer, policy.config
    nl = tok("\n", add_special_tokens=False)["input_ids"][-1]
    if v.hf_path is not None:
        scorer_bb = recipes.load_backbone(recipes.BackboneConfig(hf_path=v.hf_path),
                                          jax.random.fold_in(key, 9), config.mesh)
        common = dict(config=scorer_bb.config, tokenizer=scorer_bb.tokenizer,
                      num_params=_num_params(scorer_bb.params),
                      retokenize=None if search.scorers.same_vocabulary(scorer_bb.tokenizer, tok)
                      else search.Retokenize(policy_tokenizer=tok, step_separator=v.step_separator))
        if v.readout == "token_class":
            return {"prm": search.TokenClassPRMScorer(scorer_bb.params, **common), "orm": None}
        ids = [scorer_bb.tokenizer(t, add_special_tokens=False)["input_ids"][-1]
               for t in (v.good_token, v.bad_token)]
        return {"prm": search.StepTagLMScorer(scorer_bb.params, good_id=ids[0], bad_id=ids[1],
                                              **common), "orm": None}
    task_records = arithmetic.step_solutions(v.num_synthetic, seed=config.seed + 4,
                                             config=v.task, split="train")
    task_records += answer_line_negatives(task_records, v.answer_negatives, config.seed + 4,
                                          v.task.max_value)
    synthetic = [r.up_to_first_error() for r in task_records]
    own = policy_step_records(gen, tok, config, jax.random.fold_in(key, 7))
    prm_records = synthetic + [r.up_to_first_error() for r in own]
    print(f"verifier data: {len(synthetic)} task solutions (answer-line negatives "
          f"{len(synthetic) - v.num_synthetic}) + {len(own)} policy samples "
          f"({np.mean([r.first_error == -1 for r in own]):.2f} correct)", flush=True)
    prm_params = train_verifier("prm", policy.params, prm_records, tok, model=model,
                                config=config, steps=v.steps, last_step_only=False,
                                key=jax.random.fold_in(key, 3), out=out,
                                placement=policy.placement)
    orm_records = task_records + own
    orm_params = train_verifier("orm", policy.params, orm_records, tok, model=model,
                                config=config, steps=v.orm_steps, last_step_only=True,
                                key=jax.random.fold_in(key, 4), out=out,
                                placement=policy.placement)
    common = dict(config=model, tokenizer=tok, eos_tag=nl, num_params=_num_params(policy.params))
    return {"prm": search.PRMScorer(prm_params, **common),
            "orm": search.OutcomeScorer(orm_params, **common)}


def _num_params(params) -> int:
    return int(sum(np.prod(x.shape) for x in jax.tree.leaves(params)))


# ----------------------------------------------------------------------------- methods


def _flops(cost: dict, policy_params: int, scorer_params: int) -> float:
    return 2.0 * (policy_params * (cost["generated"] + cost["prefilled"])
                  + scorer_params * cost["scored"])


def _accuracy(result: SearchResult, answers: list[int]) -> float:
    return float(np.mean([c == a for c, a in zip(result.chosen_answers(), answers)]))


def evaluate(policy, scorers, config: Config, key) -> dict[str, dict[int, dict]]:
    """{method: {N: {"accuracy", "tokens", "flops"}}}: tokens and FLOPs per problem."""
    tok, model = policy.tokenizer, policy.config
    problems = arithmetic.problems(config.num_eval, seed=config.seed + 11,
                                   config=_eval_task(config), split="test")
    questions, answers = [p.question for p in problems], [p.answer for p in problems]
    steps = _step_config(tok, config)
    gen = search.StepGenerator(policy.params, config=model, steps=steps)
    P = _num_params(policy.params)
    prm_s, orm_s = scorers["prm"], scorers["orm"]
    out: dict[str, dict[int, dict]] = {m: {} for m in METHODS}
    B = len(problems)

    def record(method, n, acc, cost, scorer_params):
        out[method][n] = {"accuracy": acc, "tokens": cost["generated"] / B,
                          "flops": _flops(cost, P, scorer_params) / B}

    kw = dict(tokenizer=tok, answer_fn=arithmetic.extract_answer)
    for n in config.ns:
        k = jax.random.fold_in(key, n)
        also = {"orm": (orm_s, "last")} if orm_s is not None else {}
        # One generation, scored once by each scorer, serves every selection rule.
        res = search.sample_n(gen, questions, k, n=n, scorer=prm_s, also=also, **kw)
        cost = dict(res.cost)
        each = dict(cost, scored=cost["scored"] / (1 + len(also)))
        correct = [[a == ref for a in ans] for ans, ref in zip(res.answers, answers)]
        scores = {"prm_min": [_agg(c, "min") for c in res.candidates],
                  "prm_last": [_agg(c, "last") for c in res.candidates], **res.extra_scores}
        sel = search.selection_accuracies(res.answers, correct, scores)
        record("majority", n, sel["majority"], dict(cost, scored=0), 0)
        record("prm_bon_min", n, sel["best_of_n/prm_min"], each, P)
        record("prm_bon_last", n, sel["best_of_n/prm_last"], each, P)
        record("weighted", n, sel["weighted/prm_min"], each, P)
        if also:
            record("orm_bon", n, sel["best_of_n/orm"], each, P)
        out.setdefault("pass_at_n", {})[n] = {
            "accuracy": float(np.mean([any(c) for c in correct])),
            "tokens": cost["generated"] / B, "flops": _flops(cost, P, 0) / B}
        process = process_diagnostics(problems, res, scores["prm_min"])
        out.setdefault("pass_at_n_process", {})[n] = {
            "accuracy": process.pop("pass_at_n_process"), "tokens": cost["generated"] / B,
            "flops": _flops(cost, P, 0) / B}
        if n == config.report_n:
            out["process"] = process
            print(f"process diagnostics at N={n}: "
                  + " ".join(f"{k}={v:.3f}" for k, v in process.items()), flush=True)

        er = search.early_rejection(gen, questions, k, n=n, scorer=prm_s,
                                    reject_steps=config.reject_steps,
                                    reject_below=config.reject_below, **kw)
        record("early_rejection", n, _accuracy(er, answers), er.cost, P)
        m = min(config.expansions, n)
        beam = search.beam_search(gen, questions, k, n=n, expansions=m, scorer=prm_s, **kw)
        record("beam", n, _accuracy(beam, answers), beam.cost, P)
        tree = search.dvts(gen, questions, k, n=n, expansions=m, scorer=prm_s, **kw)
        record("dvts", n, _accuracy(tree, answers), tree.cost, P)
        if n <= config.mcts_max_n:
            # The tree's rows share the write slot (one step per simulation, then the
            # finishing steps): the budget grows with this N's simulations, not the largest.
            mgen = search.StepGenerator(policy.params, config=model, steps=dataclasses.replace(
                steps, max_tokens=config.step_tokens * (n * 2 + config.max_steps)))
            mres, _ = search.mcts_search(mgen, questions, k, config=search.MCTSConfig(
                simulations=n, expansions=config.mcts_expansions), scorer=prm_s, **kw)
            record("mcts", n, _accuracy(mres, answers), mres.cost, P)
        print(f"N={n}: " + " ".join(f"{m}={v[n]['accuracy']:.3f}" for m, v in out.items()
                                    if n in v), flush=True)
    return out


def process_diagnostics(problems, res: SearchResult, prm_scores) -> dict[str, float]:
    """How the samples reach their answers, by the task's step check: the share of
    samples whose every line is right (`process_correct`), the share of right answers
    reached through a wrong line (`right_via_wrong_steps`), the share of problems with a
    process-correct sample (`pass_at_n_process`, what a perfect PRM can pick), and the
    PRM's AUROC (aggregated score) against process and answer correctness."""
    proc, ans, s = [], [], []
    for p, cands, answers, scores in zip(problems, res.candidates, res.answers, prm_scores):
        proc.append([arithmetic.check_steps(p, c.text) == -1 for c in cands])
        ans.append([a == p.answer for a in answers])
        s.append(np.asarray(scores))
    flat_p, flat_a, flat_s = (np.concatenate(x) for x in (proc, ans, s))
    return {"process_correct": float(flat_p.mean()),
            "right_via_wrong_steps": float((flat_a & ~flat_p).sum() / max(flat_a.sum(), 1)),
            "pass_at_n_process": float(np.mean([any(x) for x in proc])),
            "prm_auroc_process": auroc(flat_s, flat_p), "prm_auroc_answer": auroc(flat_s, flat_a)}


def _agg(cands, how) -> np.ndarray:
    """Each candidate's step scores reduced by `how`: [n]."""
    n = np.asarray([len(c.step_scores) for c in cands])
    s = np.zeros((len(cands), max(1, int(n.max()))))
    for i, c in enumerate(cands):
        s[i, :n[i]] = c.step_scores
    return search.aggregate(s, n, how)


def _eval_task(config: Config) -> arithmetic.ArithmeticConfig:
    return dataclasses.replace(config.task, min_steps=config.eval_steps,
                               max_steps=config.eval_steps)


def _step_config(tok, config: Config) -> search.StepConfig:
    return search.StepConfig(
        delimiters=(search.delimiter_ids(tok, "\n"),), eos_ids=eos_ids(tok),
        step_tokens=config.step_tokens, max_tokens=config.max_tokens, max_steps=config.max_steps,
        temperature=config.temperature, pad_id=tok.pad_token_id, prompt_buckets=config.buckets)


# ----------------------------------------------------------------------------- run


def plot(curves: dict, out: Path, report_n: int) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for method, by_n in curves.items():
        if not by_n or method == "process":
            continue
        ns = sorted(by_n)
        style = {"pass_at_n": "k:", "pass_at_n_process": "k--"}.get(method, "-o")
        for ax, x in zip(axes, ("tokens", "flops")):
            ax.plot([by_n[n][x] for n in ns], [by_n[n]["accuracy"] for n in ns], style,
                    label=method, markersize=3)
    for ax, label in zip(axes, ("generated tokens per problem", "FLOPs per problem (policy + scorer)")):
        ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.set_ylabel("accuracy")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"Test-time scaling on held-out arithmetic (N = {sorted(next(iter(curves.values())))})")
    fig.tight_layout()
    path = out / "scaling.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def run(config: Config, out: Path) -> dict:
    start = time.time()
    out = Path(out)
    key = jax.random.key(config.seed)
    backbone = recipes.load_backbone(config.backbone, jax.random.fold_in(key, 0), config.mesh)
    n_long = int(round(config.long_fraction * config.sft.num_examples))
    sft_records = arithmetic.sft_examples(config.sft.num_examples - n_long, seed=config.seed + 2,
                                          config=config.task, split="train")
    long_task = dataclasses.replace(config.task, min_steps=config.long_steps,
                                    max_steps=config.long_steps)
    sft_records += arithmetic.sft_examples(n_long, seed=config.seed + 3, config=long_task,
                                           split="train")
    params = recipes.sft_warm_start(backbone, sft_records, sft=config.sft,
                                    buckets=config.buckets, out_dir=out, seed=config.seed)
    policy = backbone._replace(params=params)
    with placement_lib.context(policy.placement):
        gen = search.StepGenerator(params, config=policy.config,
                                   steps=_step_config(policy.tokenizer, config))
        scorers = build_scorers(policy, gen, config, out, key)
        greedy = search.StepGenerator(params, config=policy.config, steps=dataclasses.replace(
            _step_config(policy.tokenizer, config), temperature=0.0))
        problems = arithmetic.problems(config.num_eval, seed=config.seed + 11,
                                       config=_eval_task(config), split="test")
        g = search.sample_n(greedy, [p.question for p in problems], n=1,
                            tokenizer=policy.tokenizer, answer_fn=arithmetic.extract_answer)
        pass1 = _accuracy(g, [p.answer for p in problems])
        print(f"greedy pass@1 on {config.eval_steps}-step problems: {pass1:.3f}", flush=True)
        curves = evaluate(policy, scorers, config, jax.random.fold_in(key, 1))
    process = curves.pop("process")
    (out / "curves.json").write_text(json.dumps(
        {m: {str(n): v for n, v in by_n.items()} for m, by_n in curves.items()}, indent=1))
    plot(curves, out, config.report_n)
    n = config.report_n
    result = {"greedy_pass1": pass1, **{f"{k}_{n}": round(v, 4) for k, v in process.items()}}
    for m, by_n in curves.items():
        if n in by_n:
            result[f"{m}_{n}"] = by_n[n]["accuracy"]
            result[f"{m}_{n}_tokens"] = round(by_n[n]["tokens"], 1)
    if n in curves["early_rejection"]:
        result["early_rejection_token_saving"] = 1.0 - (curves["early_rejection"][n]["tokens"]
                                                        / curves["prm_bon_min"][n]["tokens"])
        # Accuracy of early rejection minus that of the full PRM best-of-N it cuts short
        # (the "within 1 point": a delta >= -0.01, i.e. at most 1 point worse).
        result["early_rejection_delta"] = round(curves["early_rejection"][n]["accuracy"]
                                                - curves["prm_bon_min"][n]["accuracy"], 4)
    result["minutes"] = round((time.time() - start) / 60, 2)
    write_result(out, result)
    return result


if __name__ == "__main__":
    experiment.main(PRESETS, run, description=__doc__)
