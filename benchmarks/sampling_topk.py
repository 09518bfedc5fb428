"""Top-k and top-p truncation of one decode step's logits: rewardjax's
`truncation_mask` against `jax.lax.top_k` and torch's `topk` (what transformers'
`TopKLogitsWarper` calls), on the same [B, V] float32 logits, in one process.

Each side builds the keep-mask of the k largest logits per row (ties at the k-th value
kept): rewardjax by a 32-pass bisection over the logits' int32 codes
(`sampling.controls.kth_largest`), `lax.top_k` as rewardjax did before, torch with
`topk(...).values[:, -1:]` and a comparison. The masks are checked equal. Each is timed
--reps times after a warm-up (jax: jitted, `block_until_ready`); figures are medians.

The last line is `RESULT ...` with, per (B, V, k), `<B>x<V>_k<k>_vs_torch` and
`..._vs_lax` (the other's time / rewardjax's), and the same figures go to
`<out>/result.json`. Then top-p 0.9 alone against the sort-softmax-cumsum of
transformers' `TopPLogitsWarper` (`<B>x<V>_p0.9_vs_torch`, and how many tokens' keep
flags differ: float sums in another order can move a token whose mass above is within
rounding of p).

    python benchmarks/sampling_topk.py
    python benchmarks/sampling_topk.py --quick
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from rl_step import set_threads


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch", type=int, nargs="+", default=[8, 128])
    p.add_argument("--vocab", type=int, nargs="+", default=[2048, 151_936])
    p.add_argument("--k", type=int, nargs="+", default=[10, 50])
    p.add_argument("--reps", type=int, default=20)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--quick", action="store_true", help="batch 8, vocab 2048, k 10, 3 reps")
    p.add_argument("--out", default="/tmp/rewardjax_bench/sampling_topk")
    args = p.parse_args(argv)
    if args.quick:
        args.batch, args.vocab, args.k, args.reps = [8], [2048], [10], 3
    return args


def median_seconds(fn, reps: int) -> float:
    fn()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main(argv=None) -> dict:
    args = parse_args(argv)
    set_threads(args.threads, "")
    import jax
    import jax.numpy as jnp
    import numpy as np
    import torch

    from rewardjax.sampling.controls import truncation_mask

    torch.set_num_threads(args.threads)
    result = {}

    def record(name: str, ours, peers: dict, **extra) -> None:
        """Times `ours` (a jax thunk) and each peer thunk; ratios are peer / ours."""
        t_ours = median_seconds(lambda: ours().block_until_ready(), args.reps)
        times = {peer: median_seconds(fn, args.reps) for peer, fn in peers.items()}
        print(f"{name}: rewardjax {t_ours * 1e3:.3f} ms, " + ", ".join(
            f"{peer} {t * 1e3:.3f} ms" for peer, t in times.items()) +
            "".join(f", {k} {v}" for k, v in extra.items()), flush=True)
        result[f"{name}_ms"] = round(t_ours * 1e3, 4)
        result.update({f"{name}_vs_{peer}": round(t / t_ours, 2) for peer, t in times.items()})
        result.update({f"{name}_{k}": v for k, v in extra.items()})

    for B in args.batch:
        for V in args.vocab:
            logits = np.random.default_rng(0).standard_normal((B, V)).astype(np.float32)
            x, xt = jnp.asarray(logits), torch.from_numpy(logits)
            for k in args.k:
                ours = jax.jit(lambda v, k=k: truncation_mask(v, top_k=k))
                lax = jax.jit(lambda v, k=k: v >= jax.lax.top_k(v, k)[0][:, -1:])
                def torch_topk(k=k):
                    return xt >= torch.topk(xt, k, dim=-1).values[:, -1:]
                if not (np.array_equal(np.asarray(ours(x)), np.asarray(lax(x)))
                        and np.array_equal(np.asarray(ours(x)), torch_topk().numpy())):
                    raise AssertionError(f"top-k masks differ at B={B} V={V} k={k}")
                record(f"{B}x{V}_k{k}", lambda: ours(x),
                       {"torch": torch_topk, "lax": lambda: lax(x).block_until_ready()})
            # top-p 0.9 alone: rewardjax's bisection against the sort transformers'
            # TopPLogitsWarper does (sort, softmax, cumsum, scatter back)
            ours_p = jax.jit(lambda v: truncation_mask(v, top_p=0.9))
            def torch_top_p():
                vals, idx = torch.sort(xt, dim=-1, descending=True)
                probs = vals.softmax(-1)
                keep = (probs.cumsum(-1) - probs) < 0.9
                return torch.zeros_like(keep).scatter(-1, idx, keep)
            differ = int((np.asarray(ours_p(x)) != torch_top_p().numpy()).sum())
            record(f"{B}x{V}_p0.9", lambda: ours_p(x), {"torch": torch_top_p},
                   tokens_differ=differ)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "result.json").write_text(json.dumps(result, indent=2))
    print("RESULT " + " ".join(f"{k}={v}" for k, v in result.items()))
    return result


if __name__ == "__main__":
    main()
