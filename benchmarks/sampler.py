"""Decode throughput: rewardjax's sampler against transformers' `generate` (PyTorch, CPU),
each system in its own process, runs alternating A/B/A/B.

Both sides run the same work:

- weights: the random Qwen2-style model of `reward_model.py` and `rl_step.py` (hidden
  512, 8 layers, 8 heads, 4 KV heads, MLP 1408, vocab 4096, tied embeddings, q/k/v
  biases, float32, 25.7M params), built with `rewardjax.models.init_params` and written
  with `hf.save`; rewardjax reads it with `hf.load`, torch with `from_pretrained`.
- prompts, two sets of [B, P] ids (GSM8K test questions, the default tokenizer):
  `equal`: every row exactly P real tokens (the questions' token stream cut into rows),
  no padding; `natural`: question b at its own length (cut to P), left-padded to P, as
  an RL rollout batch is (at P=128, B=64: 42% of the slots are padding).
- decoding: greedy, exactly --new-tokens new tokens (no eos), KV cache on both sides;
  transformers under `torch.inference_mode()` with the attention mask.

torch's OpenMP threads and XLA's compete when both live in one process (rewardjax lost
~20% that way), so every run is a fresh process (`--system`), the two systems alternate
(--runs each) and --threads sets both libraries' intra-op threads. Within a run each
(prompt set, batch) is warmed up once (XLA compilation, torch first calls), then timed
--reps times.

Figures, medians over all timed calls of all runs of a system:
  prefill tok/s   B * P / time of the prompt forward pass (padding included)
  decode tok/s    B * new_tokens / (generate time - prefill time)
  e2e tok/s       B * new_tokens / generate time
  peak frac       rewardjax decode FLOP/s (2 * matmul params + attention at the mean
                  cache length, per token) over this machine's float32 matmul peak
                  (a jitted 2048^3 matmul, measured in each rewardjax run)

The last line is `RESULT ...` with, per prompt set and batch, `<set>_b<B>_decode_speedup`
and `<set>_b<B>_e2e_speedup` (transformers time / rewardjax time), the load averages seen,
and the same figures in `<out>/result.json`. Where the decode time goes: `decode_profile.py`.

    python benchmarks/sampler.py            # batch 8 and 64, P=128, 128 new tokens, 3 runs each
    python benchmarks/sampler.py --quick    # smoke run: batch 8, 16 new tokens, 1 run each
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from importlib import resources
from pathlib import Path

from reward_model import model_config
from rl_step import add_model_args, load_now, run_system, spawn_system

SYSTEMS = ("rewardjax", "transformers")
PROMPT_SETS = ("equal", "natural")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch", type=int, nargs="+", default=[8, 64], help="batch sizes B")
    p.add_argument("--prompt-len", type=int, default=128, help="prompt slots P (both sets)")
    p.add_argument("--new-tokens", type=int, default=128, help="new tokens per sequence")
    p.add_argument("--runs", type=int, default=3, help="runs (processes) per system, alternating")
    p.add_argument("--reps", type=int, default=2, help="timed calls per run, set and batch")
    add_model_args(p, threads=2)
    p.add_argument("--quick", action="store_true",
                   help="smoke run: batch 8, 16 new tokens, 1 run each, 1 rep")
    p.add_argument("--out", default="runs/bench_sampler", help="output directory")
    p.add_argument("--system", choices=SYSTEMS, help=argparse.SUPPRESS)  # child process
    p.add_argument("--work", help=argparse.SUPPRESS)  # child: shared model + prompts
    args = p.parse_args(argv)
    if args.quick:
        args.batch, args.new_tokens, args.runs, args.reps = [8], 16, 1, 1
    if args.runs < 1 or args.reps < 1 or args.new_tokens < 1 or args.prompt_len < 1:
        p.error("--runs, --reps, --new-tokens and --prompt-len must be >= 1")
    return args


# ----------------------------------------------------------------------------- inputs


def prompt_sets(batch: int, length: int, vocab: int) -> dict:
    """{set: (tokens [B, P] int64, mask [B, P] int64)} for the `equal` and `natural` sets."""
    import numpy as np

    from rewardjax.data.tokenizer import default_tokenizer

    tok = default_tokenizer()
    path = Path(str(resources.files("rewardjax"))) / "assets/data/gsm8k/test.jsonl"
    questions = [tok(json.loads(line)["question"])["input_ids"]
                 for line in path.read_text().splitlines()]
    if max(max(q) for q in questions) >= vocab:
        raise ValueError(f"--vocab {vocab} is smaller than the tokenizer's ids")
    stream = [t for q in questions for t in q]
    if len(stream) < batch * length:
        raise ValueError(f"GSM8K test holds {len(stream)} tokens, fewer than B*P = {batch * length}")
    equal = np.asarray(stream[:batch * length], np.int64).reshape(batch, length)
    natural = np.zeros((batch, length), np.int64)  # 0: the pad id
    mask = np.zeros((batch, length), np.int64)
    for b in range(batch):
        ids = questions[b % len(questions)][:length]
        natural[b, length - len(ids):] = ids
        mask[b, length - len(ids):] = 1
    return {"equal": (equal, np.ones_like(equal)), "natural": (natural, mask)}


def prepare(args, work: Path) -> None:
    """The shared HF model directory and `prompts.npz` ({set}_b{B}_tokens / _mask)."""
    import jax
    import numpy as np

    from rewardjax.models import hf, init_params

    config = model_config(args)
    hf.save(work / "model", config, init_params(config, jax.random.key(0)))
    arrays = {}
    for B in args.batch:
        for name, (tokens, mask) in prompt_sets(B, args.prompt_len, args.vocab).items():
            arrays[f"{name}_b{B}_tokens"], arrays[f"{name}_b{B}_mask"] = tokens, mask
    np.savez(work / "prompts.npz", **arrays)


def cases(args):
    return [(name, B) for B in args.batch for name in PROMPT_SETS]


# ----------------------------------------------------------------------------- systems


def matmul_peak(n: int = 2048, reps: int = 5) -> float:
    """Measured float32 FLOP/s of one jitted n x n x n matmul (best of reps)."""
    import jax
    import jax.numpy as jnp

    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
    f = jax.jit(jnp.dot)
    f(a, b).block_until_ready()
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        f(a, b).block_until_ready()
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best


def time_calls(generate, prompt_pass, reps: int):
    """(first generate output, {first_call_s, generate_s: [...], prefill_s: [...]}): one
    warm-up of each, then `reps` timed calls of each, alternating."""
    start = time.perf_counter()
    first = generate()
    row = {"first_call_s": time.perf_counter() - start, "generate_s": [], "prefill_s": []}
    prompt_pass()
    for _ in range(reps):
        for fn, name in ((generate, "generate_s"), (prompt_pass, "prefill_s")):
            start = time.perf_counter()
            fn()
            row[name].append(time.perf_counter() - start)
    return first, row


def run_rewardjax(args, work: Path) -> dict:
    import jax
    import numpy as np

    from rewardjax.models import hf
    from rewardjax.sampling import SamplerConfig, prefill, sample

    # Later runs reuse the first run's executables: a run then costs its timed calls.
    jax.config.update("jax_compilation_cache_dir", str(work / "jax_cache"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    config, params = hf.load(work / "model")
    prompts = np.load(work / "prompts.npz")
    sampling = SamplerConfig(max_new_tokens=args.new_tokens, temperature=0.0,
                             prompt_buckets=(args.prompt_len,))
    key = jax.random.key(0)
    out: dict = {"peaks": [], "version": f"jax {jax.__version__}"}
    for name, B in cases(args):
        tokens = prompts[f"{name}_b{B}_tokens"]
        mask = prompts[f"{name}_b{B}_mask"].astype(bool)

        def generate():
            return sample(params, tokens, config=config, sampling=sampling,
                          prompt_mask=mask).tokens.block_until_ready()

        def prompt_pass():
            jax.block_until_ready(prefill(params, tokens, mask, key, config=config,
                                          sampling=sampling))

        first, row = time_calls(generate, prompt_pass, args.reps)
        out["peaks"].append(matmul_peak())
        np.save(work / f"rewardjax_{name}_b{B}.npy", np.asarray(first[:, 0]))
        out[f"{name}_b{B}"] = row
    return out


def run_transformers(args, work: Path) -> dict:
    import numpy as np
    import torch
    import transformers

    if args.threads:
        torch.set_num_threads(args.threads)
    model = transformers.AutoModelForCausalLM.from_pretrained(
        str(work / "model"), dtype=torch.float32).eval()
    prompts = np.load(work / "prompts.npz")
    out: dict = {"version": f"transformers {transformers.__version__}, torch {torch.__version__}, "
                            f"{torch.get_num_threads()} threads"}
    for name, B in cases(args):
        input_ids = torch.from_numpy(prompts[f"{name}_b{B}_tokens"])
        attention_mask = torch.from_numpy(prompts[f"{name}_b{B}_mask"])
        kwargs = dict(attention_mask=attention_mask, max_new_tokens=args.new_tokens,
                      min_new_tokens=0, do_sample=False, use_cache=True, pad_token_id=0,
                      eos_token_id=None)

        def generate():
            with torch.inference_mode():
                return model.generate(input_ids, **kwargs)

        def prompt_pass():
            with torch.inference_mode():
                model(input_ids, attention_mask=attention_mask, use_cache=True, logits_to_keep=1)

        first, row = time_calls(generate, prompt_pass, args.reps)
        np.save(work / f"transformers_{name}_b{B}.npy", first[:, args.prompt_len:].numpy())
        out[f"{name}_b{B}"] = row
    return out


# ----------------------------------------------------------------------------- main


def decode_flops_per_token(config, cache_len: float) -> float:
    """2 * (matmul params) + attention (QK^T and PV) at an average cache length."""
    c = config
    layer = (c.hidden_size * (c.num_heads + 2 * c.num_kv_heads) * c.head_dim
             + c.num_heads * c.head_dim * c.hidden_size + 3 * c.hidden_size * c.intermediate_size)
    matmul = c.num_layers * layer + c.hidden_size * c.vocab_size
    attention = c.num_layers * 2 * c.num_heads * c.head_dim * cache_len
    return 2 * matmul + 2 * attention


def figures(runs: list[dict], case: str, B: int, P: int, T: int) -> dict:
    gen = statistics.median(t for r in runs for t in r[case]["generate_s"])
    pre = statistics.median(t for r in runs for t in r[case]["prefill_s"])
    # Decode time is generate minus a separately timed prompt pass; when noise makes that
    # difference vanish (few new tokens, a loaded machine) there is no decode figure.
    decode_tok_s = B * T / (gen - pre) if gen > pre else float("nan")
    return {"prefill_tok_s": B * P / pre, "decode_tok_s": decode_tok_s,
            "e2e_tok_s": B * T / gen, "generate_s": gen, "prefill_s": pre,
            "runs_e2e_tok_s": "/".join(f"{B * T / statistics.median(r[case]['generate_s']):.0f}"
                                       for r in runs)}


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    if args.system:
        return run_system(args, {"rewardjax": run_rewardjax, "transformers": run_transformers})
    import numpy as np

    from rewardjax.train import write_result

    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    config = model_config(args)
    P, T = args.prompt_len, args.new_tokens
    load_start = os.getloadavg()[0]
    print(f"model: qwen2 D={config.hidden_size} L={config.num_layers} N={config.num_heads} "
          f"K={config.num_kv_heads} F={config.intermediate_size} V={config.vocab_size} tied "
          f"float32, {config.num_params() / 1e6:.1f}M params; prompts P={P}, {T} new tokens, "
          f"greedy; batches {args.batch}; {args.runs} runs x {args.reps} reps per system, "
          f"threads {args.threads or 'default'}; {os.cpu_count()} cpus "
          f"({platform.processor() or platform.machine()}), load {load_now()}", flush=True)
    runs: dict[str, list[dict]] = {s: [] for s in SYSTEMS}
    loads = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        prepare(args, work)
        prompts = np.load(work / "prompts.npz")
        for r in range(args.runs):
            for system in SYSTEMS:
                start = time.perf_counter()
                out = spawn_system(__file__, argv, system, work, r)
                runs[system].append(out)
                loads.append(out["load1"])
                e2e = " ".join(f"{name}/b{B} {B * T / statistics.median(out[f'{name}_b{B}']['generate_s']):.0f}"
                               for name, B in cases(args))
                print(f"  run {r} {system:12s}: e2e tok/s {e2e}; process "
                      f"{time.perf_counter() - start:5.1f}s, load {out['load1']:.2f}", flush=True)
        match = {}
        for name, B in cases(args):
            a = np.load(work / f"rewardjax_{name}_b{B}.npy")
            b = np.load(work / f"transformers_{name}_b{B}.npy")
            match[f"{name}_b{B}"] = float(np.mean(a == b))
        pad_share = {name: 1 - float(prompts[f"{name}_b{max(args.batch)}_mask"].mean())
                     for name in PROMPT_SETS}

    peak = statistics.median(p for r in runs["rewardjax"] for p in r["peaks"])
    flops = decode_flops_per_token(config, P + T / 2)
    results: dict = {"peak_gflops": peak / 1e9}
    rows = {}
    for name, B in cases(args):
        case = f"{name}_b{B}"
        jx = figures(runs["rewardjax"], case, B, P, T)
        hf = figures(runs["transformers"], case, B, P, T)
        rows[case] = (jx, hf)
        results.update({
            f"{case}_jax_decode_tok_s": jx["decode_tok_s"], f"{case}_hf_decode_tok_s": hf["decode_tok_s"],
            f"{case}_decode_speedup": jx["decode_tok_s"] / hf["decode_tok_s"],
            f"{case}_jax_e2e_tok_s": jx["e2e_tok_s"], f"{case}_hf_e2e_tok_s": hf["e2e_tok_s"],
            f"{case}_e2e_speedup": hf["generate_s"] / jx["generate_s"],
            f"{case}_jax_peak_frac": jx["decode_tok_s"] * flops / peak})
    results.update(load1_start=load_start, load1_runs="/".join(f"{x:.1f}" for x in loads),
                   load1_end=os.getloadavg()[0], runs=args.runs, reps=args.reps,
                   threads=args.threads or os.cpu_count(), prompt_len=P, new_tokens=T,
                   natural_pad_share=pad_share["natural"], greedy_match_min=min(match.values()),
                   cpus=os.cpu_count())

    print(f"\nrewardjax ({runs['rewardjax'][0]['version']}) vs {runs['transformers'][0]['version']}; "
          f"float32 matmul peak {peak / 1e9:.0f} GFLOP/s; natural set "
          f"{100 * pad_share['natural']:.0f}% padding")
    print(f"  {'':18s} {'':12s} {'prefill tok/s':>14s} {'decode tok/s':>13s} {'e2e tok/s':>10s} "
          f"{'e2e per run':>16s}")
    for case, (jx, hf) in rows.items():
        for label, f in (("rewardjax", jx), ("transformers", hf)):
            print(f"  {case:18s} {label:12s} {f['prefill_tok_s']:14.0f} {f['decode_tok_s']:13.1f} "
                  f"{f['e2e_tok_s']:10.1f} {f['runs_e2e_tok_s']:>16s}")
        print(f"  {case:18s} decode {jx['decode_tok_s'] / hf['decode_tok_s']:.2f}x, end to end "
              f"{hf['generate_s'] / jx['generate_s']:.2f}x; greedy tokens equal "
              f"{100 * match[case]:.1f}%")
    (out_dir / "runs.json").write_text(json.dumps({"args": vars(args), "runs": runs,
                                                   "greedy_match": match}, indent=2))
    return write_result(out_dir, results)


if __name__ == "__main__":
    main()
