"""Search throughput: PRM beam search against best-of-N sampling on the same model and budget.

Both sides run `rewardjax.search` on one random Qwen2-style model (the policy) and a PRM
on the same backbone with a random step head:

- best-of-N: N samples per prompt, generated step by step to the end, scored once by
  the PRM (`search.sample_n`);
- beam search: N beams, M expansions; after every step the PRM scores every prefix and
  the kept beams' cache rows are gathered M times (`search.beam_search`).

The random policy almost never writes the delimiter, so every step runs to the step
budget: both methods generate the same number of tokens (N x steps x step tokens per
prompt) and the comparison isolates what beam search adds (per-step scoring, row
gathers, the wait for the batch's longest step). Each method runs once to compile, then
--reps timed calls (no compilation may happen in them; counted).

Figures (medians over timed calls):
  <m>_tok_s          generated tokens / wall time of the whole call
  <m>_decode_share   share of the call in the decode loop
  <m>_score_share    share in PRM scoring (building the scorer batch + forward)
  <m>_gather_share   share in cache-row gathers (`select`)
  beam_vs_bon        beam_tok_s / bon_tok_s

The last line is `RESULT ...`; the same figures go to `<out>/result.json`.

    python benchmarks/search.py            # 8 prompts, N=16, M=4, 4 steps of 16 tokens
    python benchmarks/search.py --quick    # smoke run on a tiny model
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--prompts", type=int, default=8)
    p.add_argument("--prompt-len", type=int, default=64)
    p.add_argument("--n", type=int, default=16, help="samples / beams per prompt (N)")
    p.add_argument("--expansions", type=int, default=4, help="beam expansions (M)")
    p.add_argument("--steps", type=int, default=4, help="steps per solution")
    p.add_argument("--step-tokens", type=int, default=16, help="tokens per step")
    p.add_argument("--reps", type=int, default=3)
    for name, default in (("hidden", 256), ("layers", 4), ("heads", 4), ("kv-heads", 2),
                          ("mlp", 704), ("vocab", 4096)):
        p.add_argument(f"--{name}", type=int, default=default)
    p.add_argument("--quick", action="store_true", help="smoke run: tiny model, N=4, 1 rep")
    p.add_argument("--out", default="runs/bench_search")
    args = p.parse_args(argv)
    if args.quick:
        args.hidden, args.layers, args.heads, args.kv_heads, args.mlp = 64, 2, 4, 2, 128
        args.vocab, args.n, args.expansions, args.prompts, args.reps = 256, 4, 2, 2, 1
        args.steps, args.step_tokens, args.prompt_len = 2, 4, 16
    if args.n % args.expansions:
        p.error(f"--n {args.n} must be a multiple of --expansions {args.expansions}")
    return args


def _model(args):
    import jax

    from rewardjax.models import ModelConfig, init_params

    config = ModelConfig(model_type="qwen2", vocab_size=args.vocab, hidden_size=args.hidden,
                         intermediate_size=args.mlp, num_layers=args.layers, num_heads=args.heads,
                         num_kv_heads=args.kv_heads, head_dim=args.hidden // args.heads,
                         qkv_bias=True, tie_word_embeddings=True)
    return config, init_params(config, jax.random.key(0))


class _Tok:
    """Decodes ids as space-separated numbers (the texts are only carried along)."""

    def __init__(self, vocab):
        self.vocab = vocab

    def __len__(self):
        return self.vocab

    def get_vocab(self):
        return {str(i): i for i in range(self.vocab)}

    def decode(self, ids, skip_special_tokens=True):
        return " ".join(str(int(i)) for i in ids)


def main(argv=None) -> str:
    args = parse_args(argv)
    import jax
    import numpy as np

    from rewardjax import search
    from rewardjax.search import scorers

    config, params = _model(args)
    tok = _Tok(args.vocab)
    # The last id is the delimiter and the one before the eos: a random model rarely
    # draws either, so steps run to the budget on both sides.
    steps = search.StepConfig(delimiters=((args.vocab - 1,),), eos_ids=(args.vocab - 2,),
                              step_tokens=args.step_tokens,
                              max_tokens=args.steps * args.step_tokens, max_steps=args.steps,
                              temperature=1.0, prompt_buckets=(args.prompt_len,))
    prm_params = {"backbone": params,
                  "head": {"w": 0.1 * np.asarray(jax.random.normal(jax.random.key(1),
                                                                   (args.hidden, 1))),
                           "b": np.zeros((1,), np.float32)}}
    rng = np.random.default_rng(0)
    prompts = [rng.integers(1, args.vocab - 2, size=args.prompt_len - rng.integers(0, 8)).tolist()
               for _ in range(args.prompts)]
    gen = search.StepGenerator(params, config=config, steps=steps)
    prm = search.PRMScorer(prm_params, config=config, tokenizer=tok)
    kw = dict(tokenizer=tok, answer_fn=lambda t: None, scorer=prm)
    methods = {
        "bon": lambda key: search.sample_n(gen, prompts, key, n=args.n, **kw),
        "beam": lambda key: search.beam_search(gen, prompts, key, n=args.n,
                                               expansions=args.expansions, **kw),
    }

    def compiles():
        return gen.compiles() + sum(f._cache_size() for f in (scorers.score_inputs,
                                                               scorers._prm_probs))

    rows: dict[str, list[dict]] = {m: [] for m in methods}
    for m, fn in methods.items():
        fn(jax.random.key(0))  # compile
    before = compiles()
    for rep in range(args.reps):
        for m, fn in methods.items():  # alternate, so load changes hit both
            t0 = time.perf_counter()
            res = fn(jax.random.key(rep + 1))
            wall = time.perf_counter() - t0
            c = res.cost
            rows[m].append({"wall": wall, "generated": c["generated"],
                            "decode": c["seconds_decode"] / wall,
                            "score": c["seconds_score"] / wall,
                            "gather": c["seconds_gather"] / wall})
    result: dict = {}
    for m, rs in rows.items():
        result[f"{m}_tok_s"] = statistics.median(r["generated"] / r["wall"] for r in rs)
        result[f"{m}_generated"] = rs[0]["generated"]
        for part in ("decode", "score", "gather"):
            result[f"{m}_{part}_share"] = statistics.median(r[part] for r in rs)
    result["beam_vs_bon"] = result["beam_tok_s"] / result["bon_tok_s"]
    result["timed_compiles"] = compiles() - before
    result["load1"] = os.getloadavg()[0]
    result["model_params"] = int(sum(np.prod(x.shape) for x in jax.tree.leaves(params)))
    result.update(n=args.n, m=args.expansions, prompts=args.prompts, steps=args.steps,
                  step_tokens=args.step_tokens)
    clean = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in result.items()}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "result.json").write_text(json.dumps(clean, indent=2))
    line = "RESULT " + " ".join(f"{k}={v}" for k, v in clean.items())
    print(line, flush=True)
    return line


if __name__ == "__main__":
    main()
