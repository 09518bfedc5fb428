"""Decode throughput: rewardjax's sampler against transformers' `generate` on CPU.

Both run the same weights (a randomly initialized Qwen2-style model built with
transformers, saved as safetensors and loaded into rewardjax), the same prompts (GSM8K
test questions tokenized with the default tokenizer, truncated to --prompt-len tokens
and left-padded to it), greedy, exactly --new-tokens new tokens (no eos), in the same
process, alternating run by run.

transformers runs once per --hf-threads setting and the faster setting is the
baseline: on a machine shared with other jobs, torch's default of one OpenMP thread
per core can be several times slower than one thread.

Figures (all wall-clock, compilation excluded, median of --reps runs):
  prefill tok/s   B * P / time of the prompt forward pass (padding included)
  decode tok/s    B * new_tokens / (generate time - prefill time)
  e2e tok/s       B * new_tokens / generate time
  peak frac       decode FLOP/s (2 * matmul params + attention per token) divided by
                  this machine's float32 matmul peak, measured with a jnp 2048^3 matmul
                  between runs (on a shared machine the peak moves with the load)

    python benchmarks/sampler.py            # batch 8 and 64, 128 new tokens
    python benchmarks/sampler.py --quick    # a short smoke run
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path


FIGURES = ("prefill_tok_s", "decode_tok_s", "e2e_tok_s", "peak_frac")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch", type=int, nargs="+", default=[8, 64], help="batch sizes B")
    p.add_argument("--prompt-len", type=int, default=64, help="prompt tokens P")
    p.add_argument("--new-tokens", type=int, default=128, help="new tokens per sequence")
    p.add_argument("--reps", type=int, default=3, help="timed runs per system and batch")
    p.add_argument("--hidden", type=int, default=512)
    p.add_argument("--layers", type=int, default=8)
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--kv-heads", type=int, default=4)
    p.add_argument("--mlp", type=int, default=1408)
    p.add_argument("--vocab", type=int, default=4096)
    p.add_argument("--hf-threads", type=int, nargs="+", default=[1, 0],
                   help="torch intra-op thread counts to measure transformers with (0: "
                        "torch's default, all cores); the faster is the baseline")
    p.add_argument("--quick", action="store_true",
                   help="short run: batch 8, 32 new tokens, 1 rep")
    p.add_argument("--skip-hf", action="store_true", help="rewardjax only")
    p.add_argument("--out", default="runs/bench_sampler", help="output directory for JSON")
    args = p.parse_args(argv)
    if args.quick:
        args.batch, args.new_tokens, args.reps = [8], 32, 1
    return args


def gsm8k_prompts(batch: int, length: int):
    """[B, P] left-padded token ids and mask from the first B GSM8K test questions."""
    import numpy as np
    from importlib import resources

    from rewardjax.data.tokenizer import default_tokenizer

    tok = default_tokenizer()
    path = Path(str(resources.files("rewardjax"))) / "assets/data/gsm8k/test.jsonl"
    lines = path.read_text().splitlines()
    tokens = np.full((batch, length), tok.pad_token_id, np.int64)
    mask = np.zeros((batch, length), np.int64)
    for b in range(batch):
        ids = tok(json.loads(lines[b % len(lines)])["question"])["input_ids"][:length]
        tokens[b, length - len(ids):] = ids
        mask[b, length - len(ids):] = 1
    return tokens, mask


def matmul_peak(n: int = 2048, reps: int = 10) -> float:
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


def decode_flops_per_token(config, cache_len: float) -> float:
    """2 * (matmul params) + attention (QK^T and PV) at an average cache length."""
    c = config
    layer = (c.hidden_size * (c.num_heads + 2 * c.num_kv_heads) * c.head_dim
             + c.num_heads * c.head_dim * c.hidden_size + 3 * c.hidden_size * c.intermediate_size)
    matmul = c.num_layers * layer + c.hidden_size * c.vocab_size
    attention = c.num_layers * 2 * c.num_heads * c.head_dim * cache_len
    return 2 * matmul + 2 * attention


def main(argv=None):
    args = parse_args(argv)
    import jax
    import numpy as np
    import torch
    import transformers

    from rewardjax.models import hf
    from rewardjax.sampling import SamplerConfig, prefill, sample

    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    default_threads = torch.get_num_threads()
    hf_threads = [t or default_threads for t in dict.fromkeys(args.hf_threads)]

    hf_config = transformers.Qwen2Config(
        vocab_size=args.vocab, hidden_size=args.hidden, intermediate_size=args.mlp,
        num_hidden_layers=args.layers, num_attention_heads=args.heads,
        num_key_value_heads=args.kv_heads, tie_word_embeddings=True,
        max_position_embeddings=4096, pad_token_id=0, bos_token_id=None, eos_token_id=None,
        use_sliding_window=False, torch_dtype="float32")
    torch.manual_seed(0)
    model = transformers.Qwen2ForCausalLM(hf_config).eval()
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        config, params = hf.load(tmp)
    n_params = config.num_params()
    print(f"model: qwen2 D={config.hidden_size} L={config.num_layers} N={config.num_heads} "
          f"K={config.num_kv_heads} F={config.intermediate_size} V={config.vocab_size} tied "
          f"float32, {n_params / 1e6:.1f}M params")
    print(f"jax {jax.__version__} ({jax.default_backend()}, {jax.device_count()} devices), "
          f"torch {torch.__version__} (threads {hf_threads}), transformers "
          f"{transformers.__version__}, {os.cpu_count()} cpus, {platform.processor() or platform.machine()}")
    load_start = os.getloadavg()[0]
    print(f"load average (1 min) at start: {load_start:.2f}")

    P, T = args.prompt_len, args.new_tokens
    sampling = SamplerConfig(max_new_tokens=T, temperature=0.0, prompt_buckets=(P,))
    results: dict[str, float] = {"params_m": n_params / 1e6, "prompt_len": P, "new_tokens": T,
                                 "load_start": load_start}
    peaks: list[float] = []
    for B in args.batch:
        tokens_np, mask_np = gsm8k_prompts(B, P)
        key = jax.random.key(0)
        t = time.perf_counter()
        out = sample(params, tokens_np, config=config, sampling=sampling, prompt_mask=mask_np)
        out.tokens.block_until_ready()
        first_call_s = time.perf_counter() - t  # compilation + one run

        def jx_generate():
            sample(params, tokens_np, config=config, sampling=sampling,
                   prompt_mask=mask_np).tokens.block_until_ready()

        def jx_prefill():
            jax.block_until_ready(prefill(params, tokens_np, mask_np.astype(bool), key,
                                          config=config, sampling=sampling))

        input_ids, attention_mask = torch.from_numpy(tokens_np), torch.from_numpy(mask_np)
        gen_kwargs = dict(attention_mask=attention_mask, max_new_tokens=T, min_new_tokens=0,
                          do_sample=False, use_cache=True, pad_token_id=0, eos_token_id=None)

        def hf_generate(threads):
            torch.set_num_threads(threads)
            with torch.inference_mode():
                return model.generate(input_ids, **gen_kwargs)

        def hf_prefill(threads):
            torch.set_num_threads(threads)
            with torch.inference_mode():
                return model(input_ids, attention_mask=attention_mask, use_cache=True,
                             logits_to_keep=1)

        runs = {"jx": jx_generate, "jx_pre": jx_prefill}
        if not args.skip_hf:
            for th in hf_threads:
                runs[f"hf{th}"] = functools.partial(hf_generate, th)
                runs[f"hf{th}_pre"] = functools.partial(hf_prefill, th)
        for fn in runs.values():  # warm-up
            fn()
        hf_out = hf_generate(hf_threads[0]) if not args.skip_hf else None
        # The systems (and the matmul peak) alternate, run by run, so load from other
        # processes on a shared machine hits all alike; each figure is a median over runs.
        times: dict[str, list[float]] = {name: [] for name in runs}
        batch_peaks = []
        for _ in range(args.reps):
            batch_peaks.append(matmul_peak())
            for name, fn in runs.items():
                t = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t)
        peaks += batch_peaks
        peak = statistics.median(batch_peaks)
        med = {name: statistics.median(ts) for name, ts in times.items()}
        avg_cache = P + T / 2
        flops = decode_flops_per_token(config, avg_cache)

        def figures(total, pre):
            decode = B * T / (total - pre)
            return {"prefill_tok_s": B * P / pre, "decode_tok_s": decode,
                    "e2e_tok_s": B * T / total, "peak_frac": decode * flops / peak}

        row = {f"jax_{k}": v for k, v in figures(med["jx"], med["jx_pre"]).items()}
        row.update(jax_first_call_s=first_call_s, peak_gflops=peak / 1e9)
        lines = [("rewardjax", "jax")]
        if not args.skip_hf:
            for th in hf_threads:
                row.update({f"hf{th}t_{k}": v
                            for k, v in figures(med[f"hf{th}"], med[f"hf{th}_pre"]).items()})
            best = max(hf_threads, key=lambda th: row[f"hf{th}t_decode_tok_s"])
            row.update({f"hf_{k}": row[f"hf{best}t_{k}"] for k in FIGURES})
            row.update(hf_threads=best,
                       decode_speedup=row["jax_decode_tok_s"] / row["hf_decode_tok_s"],
                       e2e_speedup=row["jax_e2e_tok_s"] / row["hf_e2e_tok_s"],
                       greedy_token_match=float(np.mean(
                           hf_out[:, P:].numpy() == np.asarray(out.tokens[:, 0]))))
            lines += [(f"transformers/{th}t", f"hf{th}t") for th in hf_threads]
        print(f"\nbatch {B}: prompts {P} tokens, {T} new tokens, greedy; float32 matmul peak "
              f"{peak / 1e9:.1f} GFLOP/s (median of {len(batch_peaks)})")
        print(f"  {'':16s} {'prefill tok/s':>14s} {'decode tok/s':>13s} {'e2e tok/s':>10s} "
              f"{'peak frac':>10s}")
        for name, pre in lines:
            print(f"  {name:16s} {row[pre + '_prefill_tok_s']:14.0f} "
                  f"{row[pre + '_decode_tok_s']:13.1f} {row[pre + '_e2e_tok_s']:10.1f} "
                  f"{row[pre + '_peak_frac']:10.3f}")
        if "decode_speedup" in row:
            print(f"  decode speedup {row['decode_speedup']:.2f}x and end-to-end "
                  f"{row['e2e_speedup']:.2f}x over transformers/{row['hf_threads']}t; greedy "
                  f"tokens equal: {100 * row['greedy_token_match']:.1f}%; rewardjax first call "
                  f"(compile + run) {first_call_s:.1f}s")
        results.update({f"b{B}_{k}": v for k, v in row.items()})

    results["peak_gflops"] = statistics.median(peaks) / 1e9
    results["load_end"] = os.getloadavg()[0]
    (out_dir / "results.json").write_text(json.dumps(
        {"args": vars(args), "results": results}, indent=2))
    keys = [k for k in results if k.split("_", 1)[-1] in (
        "jax_prefill_tok_s", "jax_decode_tok_s", "hf_prefill_tok_s", "hf_decode_tok_s",
        "decode_speedup", "e2e_speedup", "jax_peak_frac")]
    print(f"\nload average (1 min) at end: {results['load_end']:.2f}")
    print("RESULT " + " ".join(f"{k}={results[k]:.4g}" for k in ["peak_gflops"] + keys))
    print(f"wrote {out_dir / 'results.json'}")


if __name__ == "__main__":
    main()
