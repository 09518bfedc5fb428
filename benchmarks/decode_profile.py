"""Where one decode step of rewardjax's sampler spends its time, and the bound that implies.

The step of `sampler.py`'s benchmark (same model, batch B, greedy, float32, the
CPU decode layout of `sampling.sampler`: per-layer, output-major, q/k/v and gate/up
fused) is cut into pieces, each timed as a jitted `fori_loop` of --iters steps over all
L layers (each layer with its own weights and cache, as in the real loop, so nothing
stays in cache from one layer to the next that would not in decoding):

  qkv         RMSNorm + fused q/k/v projection + biases + RoPE        (per layer)
  cache_write the step's keys and values written into the [B, K, S, H] caches (per layer)
  attention   scores over the cache, mask, softmax, probs @ V          (per layer)
  o_proj      attention output projection + residual                   (per layer)
  mlp         RMSNorm + fused gate/up + SiLU + down projection          (per layer)
  final       final RMSNorm + tied LM head + greedy token + embedding   (per step)
  step        the whole step (`transformer.apply` with the cache + head + argmax)
  decode      the sampler's own loop: (`sample` - `prefill`) / new tokens

S is the mean cache length the sampler's phased loop reads (prompt + the phase ends,
`sampling.sampler.decode_phases`). Each piece's FLOPs and bytes (weights, cache,
activations) give its floor on this machine, max(FLOPs / matmul peak, bytes /
bandwidth), with the float32 matmul peak (jitted 2048^3 matmul) and read bandwidth
(a jitted sum over 128 MB) measured in the same run. Sums are per decode step; per
token divide by B.

    python benchmarks/decode_profile.py                 # batch 64, P=128, 128 new tokens
    python benchmarks/decode_profile.py --batch 8
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

from reward_model import model_config
from rl_step import add_model_args, load_now, set_threads


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--prompt-len", type=int, default=128)
    p.add_argument("--new-tokens", type=int, default=128)
    p.add_argument("--iters", type=int, default=16, help="steps per timed loop")
    p.add_argument("--reps", type=int, default=5, help="timed loops per piece (median)")
    add_model_args(p, threads=2)
    p.add_argument("--out", default="runs/bench_decode_profile", help="output directory")
    args = p.parse_args(argv)
    if min(args.batch, args.iters, args.reps, args.new_tokens, args.prompt_len) < 1:
        p.error("--batch, --iters, --reps, --new-tokens and --prompt-len must be >= 1")
    return args


def best_time(fn, *xs, reps: int) -> float:
    """Median wall time of `fn(*xs)` after one warm-up call."""
    import jax

    jax.block_until_ready(fn(*xs))
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        jax.block_until_ready(fn(*xs))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def chained_time(fn, carry, consts, *, reps: int) -> float:
    """Median wall time of `carry = fn(carry, consts)` (the carry is donated, so each call
    gets the previous call's output instead of a fresh copy), after one warm-up call."""
    import jax

    carry = jax.block_until_ready(fn(carry, consts))
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        carry = jax.block_until_ready(fn(carry, consts))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def machine_bounds(reps: int) -> tuple[float, float]:
    """(float32 matmul FLOP/s of a 2048^3 matmul, read bytes/s of a 128 MB sum)."""
    import jax
    import jax.numpy as jnp

    n = 2048
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    peak = 2 * n**3 / best_time(jax.jit(jnp.dot), a, a, reps=reps)
    big = jnp.ones((32 << 20,), jnp.float32)  # far beyond the last-level cache
    bandwidth = big.nbytes / best_time(jax.jit(jnp.sum), big, reps=reps)
    return peak, bandwidth


def main(argv=None):
    args = parse_args(argv)
    set_threads(args.threads, args.xla_flags)
    import jax
    import jax.numpy as jnp
    import numpy as np

    from rewardjax.models import init_params, transformer
    from rewardjax.models.transformer import KVCache
    from rewardjax.sampling import SamplerConfig, prefill, sample
    from rewardjax.sampling.sampler import decode_phases
    from rewardjax.train import write_result

    c = model_config(args)
    B, P, T, n, L = args.batch, args.prompt_len, args.new_tokens, args.iters, c.num_layers
    D, N, K, H, F, V = (c.hidden_size, c.num_heads, c.num_kv_heads, c.head_dim,
                        c.intermediate_size, c.vocab_size)
    S = int(round(statistics.mean(P + end for end in decode_phases(T))))
    params = init_params(c, jax.random.key(0))
    # The layout the sampler's decode loop uses on CPU (`sampler.decode_params`).
    dparams = transformer.unstack_layers(params, out_major=True)
    inv_freq = transformer.rope_inv_freq(c)
    rng = np.random.default_rng(0)
    x0 = jnp.asarray(rng.normal(size=(B, 1, D)), jnp.float32)
    pos = jnp.full((B, 1), S - 1, jnp.int32)
    caches_k = tuple(jnp.asarray(rng.normal(size=(B, K, S, H)), jnp.float32) for _ in range(L))
    caches_v = tuple(jnp.asarray(rng.normal(size=(B, K, S, H)), jnp.float32) for _ in range(L))
    allowed = jnp.ones((B, 1, S), bool)
    dense = transformer._dense  # the projection `_layer` itself calls (OutMajor-aware)
    eps = c.rms_norm_eps

    consts = {"params": dparams, "k": caches_k, "v": caches_v}

    def looped(piece):
        """jit(fori_loop over n steps of `piece` for every layer); the carry is donated."""
        def run(carry, consts):
            def body(i, carry):
                for layer in range(L):
                    carry = piece(carry, i, layer, consts)
                return carry
            return jax.lax.fori_loop(0, n, body, carry)
        return jax.jit(run, donate_argnums=0)

    def qkv(x, i, layer, w):
        p = w["params"]["layers"][layer]
        h = transformer.rms_norm(x, p["attn_norm"], eps)
        q, k, v = jnp.split(dense("btd,dnh->btnh", h, p["wqkv"]), [N, N + K], axis=2)
        q, k, v = q + p["bq"], k + p["bk"], v + p["bv"]
        q = transformer.apply_rope(q, pos, inv_freq)
        k = transformer.apply_rope(k, pos, inv_freq)
        out = jnp.concatenate([q, k, v], axis=2).reshape(B, 1, -1)[..., :D]
        return x + 1e-3 * out

    def cache_write(carry, i, layer, w):
        x, ks, vs = carry
        new = x[..., :K * H].reshape(B, 1, K, H).transpose(0, 2, 1, 3)
        at = (0, 0, i % S, 0)
        ks = ks[:layer] + (jax.lax.dynamic_update_slice(ks[layer], new, at),) + ks[layer + 1:]
        vs = vs[:layer] + (jax.lax.dynamic_update_slice(vs[layer], new, at),) + vs[layer + 1:]
        return x + 1e-3, ks, vs

    def attention(q, i, layer, w):
        return q + 1e-3 * transformer.attention(q, w["k"][layer], w["v"][layer], allowed)

    def o_proj(x, i, layer, w):
        out = x[..., :N * H].reshape(B, 1, N, H)
        return x + dense("btnh,nhd->btd", out, w["params"]["layers"][layer]["wo"])

    def mlp(x, i, layer, w):
        p = w["params"]["layers"][layer]
        h = transformer.rms_norm(x, p["mlp_norm"], eps)
        gate, up = jnp.split(dense("btd,df->btf", h, p["w_gate_up"]), 2, axis=-1)
        return x + dense("btf,fd->btd", jax.nn.silu(gate) * up, p["w_down"])

    def final(x, i, layer, w):
        if layer:  # once per step
            return x
        h = transformer.rms_norm(x, w["params"]["final_norm"], eps)
        logits = transformer.project(w["params"], h, config=c)[:, 0]
        token = jnp.argmax(logits, axis=-1)
        return x + 1e-3 * w["params"]["embed"][token][:, None]

    def step(carry, i, layer, w):
        if layer:
            return carry
        token, cache = carry
        hidden, cache = transformer.apply(w["params"], token[:, None], config=c, cache=cache,
                                          output="hidden")
        logits = transformer.project(w["params"], hidden, config=c)[:, 0]
        return jnp.argmax(logits, axis=-1).astype(jnp.int32), cache

    def step_carry():
        # Slots [0, S - n) filled; the loop writes the last n, so it reads S - n/2 on average.
        mask = jnp.broadcast_to(jnp.arange(S) < S - n, (B, S))
        cache = KVCache(k=tuple(jnp.array(k) for k in caches_k),
                        v=tuple(jnp.array(v) for v in caches_v), mask=mask,
                        index=jnp.int32(S - n))
        return jnp.zeros((B,), jnp.int32), cache

    copies = lambda xs: tuple(jnp.array(x) for x in xs)  # noqa: E731 (donated carries)
    pieces = {
        "qkv": (qkv, lambda: jnp.array(x0)),
        "cache_write": (cache_write, lambda: (jnp.array(x0), copies(caches_k), copies(caches_v))),
        "attention": (attention, lambda: jnp.asarray(rng.normal(size=(B, 1, N, H)), jnp.float32)),
        "o_proj": (o_proj, lambda: jnp.array(x0)),
        "mlp": (mlp, lambda: jnp.array(x0)),
        "final": (final, lambda: jnp.array(x0)),
        "step": (step, step_carry),
    }
    f32 = 4
    w_qkv, w_o, w_mlp = D * (N + 2 * K) * H, N * H * D, 3 * D * F
    # (FLOPs, bytes) per decode step over all layers
    cost = {
        "qkv": (2 * B * L * w_qkv, f32 * L * w_qkv),
        "cache_write": (0, f32 * L * 2 * 2 * B * K * H),
        "attention": (L * 4 * B * N * S * H, f32 * L * 2 * B * K * S * H),
        "o_proj": (2 * B * L * w_o, f32 * L * w_o),
        "mlp": (2 * B * L * w_mlp, f32 * L * w_mlp),
        "final": (2 * B * D * V, f32 * D * V),
    }
    cost["step"] = tuple(sum(v[j] for v in cost.values()) for j in range(2))

    print(f"decode step of qwen2 D={D} L={L} N={N} K={K} H={H} F={F} V={V} float32, batch {B}, "
          f"mean cache length S={S} (P={P}, {T} new tokens); XLA threads "
          f"{args.threads or 'default'}; load {load_now()}", flush=True)
    peak, bandwidth = machine_bounds(args.reps)
    times = {}
    for name, (piece, carry) in pieces.items():
        times[name] = chained_time(looped(piece), carry(), consts, reps=args.reps) / n
    # The sampler itself: generate minus prefill, per new token.
    sampling = SamplerConfig(max_new_tokens=T, temperature=0.0, prompt_buckets=(P,))
    prompts = np.asarray(rng.integers(1, V, size=(B, P)), np.int32)
    mask = np.ones((B, P), bool)
    gen = best_time(lambda: sample(params, prompts, config=c, sampling=sampling,
                                   prompt_mask=mask).tokens, reps=max(2, args.reps // 2))
    pre = best_time(lambda: prefill(params, prompts, mask, jax.random.key(0), config=c,
                                    sampling=sampling), reps=args.reps)
    times["decode"] = (gen - pre) / T
    cost["decode"] = cost["step"]
    peak2, bandwidth2 = machine_bounds(args.reps)
    peak, bandwidth = max(peak, peak2), max(bandwidth, bandwidth2)

    parts = [k for k in cost if k not in ("step", "decode")]
    print(f"float32 matmul peak {peak / 1e9:.0f} GFLOP/s, read bandwidth {bandwidth / 1e9:.1f} GB/s; "
          f"load {load_now()}\n")
    print(f"  {'piece':12s} {'ms/step':>8s} {'share':>6s} {'GFLOP':>7s} {'MB':>7s} "
          f"{'GFLOP/s':>8s} {'GB/s':>6s} {'floor ms':>9s} {'x floor':>8s}")
    results: dict = {"batch": B, "cache_len": S, "peak_gflops": peak / 1e9,
                     "bandwidth_gbs": bandwidth / 1e9}
    for name in parts + ["step", "decode"]:
        flops, nbytes = cost[name]
        floor = max(flops / peak, nbytes / bandwidth)
        t = times[name]
        share = t / times["step"] if name in parts else sum(times[p] for p in parts) / t
        label = "sum/x" if name not in parts else ""
        print(f"  {name:12s} {1e3 * t:8.2f} {share:6.2f}{label:>1s} {flops / 1e9:7.3f} "
              f"{nbytes / 1e6:7.1f} {flops / t / 1e9:8.1f} {nbytes / t / 1e9:6.1f} "
              f"{1e3 * floor:9.2f} {t / floor:8.1f}")
        results[f"{name}_ms"] = 1e3 * t
        results[f"{name}_floor_ms"] = 1e3 * floor
    results["decode_tok_s"] = B / times["decode"]
    results["floor_tok_s"] = B / (max(cost["step"][0] / peak, cost["step"][1] / bandwidth))
    results["load1_end"] = os.getloadavg()[0]
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "profile.json").write_text(json.dumps({"args": vars(args), "times_s": times,
                                                      "cost": cost}, indent=2))
    print()
    return write_result(out_dir, results)


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
