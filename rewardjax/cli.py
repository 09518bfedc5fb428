"""`python -m rewardjax ...`: small commands around the library.

    python -m rewardjax quickstart [--out runs/quickstart]
    python -m rewardjax plan --config config.json --mesh data=1,fsdp=64,tensor=1 \\
        --workload rl --batch 64 --length 1024 [--device v5e] [--json]
    python -m rewardjax results runs/ > docs/results.md
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

# rewardjax.sharding.MESH_AXES, repeated because `plan` parses the mesh before JAX starts.
_MESH_AXES = ("data", "fsdp", "tensor")
_DEVICE_FLAG = "--xla_force_host_platform_device_count"


def quickstart(out: str) -> dict:
    """Builds a tiny Qwen2-style model, saves it as a Hugging Face checkpoint, loads it back
    and prints the logits of a chat-templated prompt."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from rewardjax import models
    from rewardjax.data.tokenizer import default_tokenizer, encode_chat

    start = time.time()
    tokenizer = default_tokenizer()
    config = models.ModelConfig(model_type="qwen2", vocab_size=len(tokenizer), hidden_size=64,
                                intermediate_size=128, num_layers=2, num_heads=4, num_kv_heads=2,
                                head_dim=16, qkv_bias=True, tie_word_embeddings=True,
                                pad_token_id=tokenizer.pad_token_id,
                                eos_token_id=tokenizer.eos_token_id)
    params = models.init_params(config, jax.random.key(0))
    path = models.hf.save(Path(out) / "checkpoint", config, params)
    config2, params2 = models.hf.load(path)
    ids = encode_chat(tokenizer, [{"role": "user", "content": "What is 12 + 7?"}],
                      add_generation_prompt=True)
    logits, _ = models.apply(params2, jnp.asarray([ids]), config=config2)
    before, _ = models.apply(params, jnp.asarray([ids]), config=config)
    max_diff = float(jnp.max(jnp.abs(logits - before)))
    last = np.asarray(logits[0, -1])
    print(f"saved and reloaded a {config.num_params() / 1e6:.2f}M-parameter {config.architecture} at {path}")
    print(f"prompt: {len(ids)} tokens; logits {tuple(logits.shape)}; last-position logits[:5] = "
          f"{np.array2string(last[:5], precision=4)}")
    result = {"params_millions": round(config.num_params() / 1e6, 3),
              "reload_max_abs_diff": max_diff, "seconds": round(time.time() - start, 2)}
    (Path(out) / "result.json").write_text(json.dumps(result, indent=2))
    print("RESULT " + " ".join(f"{k}={v}" for k, v in result.items()))
    return result


def _mesh_arg(text: str) -> dict[str, int]:
    sizes = {}
    for part in text.split(","):
        name, sep, value = (x.strip() for x in part.partition("="))
        if not sep or name not in _MESH_AXES:
            raise argparse.ArgumentTypeError(
                f"mesh entry {part!r} in {text!r}: expected axis=size with axis one of "
                f"{', '.join(_MESH_AXES)}")
        if name in sizes:
            raise argparse.ArgumentTypeError(f"mesh axis {name!r} is given twice in {text!r}")
        if not value.isdigit() or int(value) < 1:
            raise argparse.ArgumentTypeError(
                f"mesh axis {name}={value!r}: expected a positive integer")
        sizes[name] = int(value)
    return {a: sizes.get(a, 1) for a in _MESH_AXES}


def _with_cpu_devices(env: dict, n: int) -> dict:
    flags = [f for f in env.get("XLA_FLAGS", "").split() if not f.startswith(_DEVICE_FLAG)]
    return {**env, "XLA_FLAGS": " ".join(flags + [f"{_DEVICE_FLAG}={n}"]), "JAX_PLATFORMS": "cpu"}


def plan(args, argv: list[str]) -> int:
    """Compiles a workload for a mesh ahead of time and prints its memory per device
    (`rewardjax.plan`); with --device, exits 1 when it does not fit that device."""
    n = math.prod(args.mesh.values())
    if "jax" in sys.modules:
        import jax

        if len(jax.devices("cpu")) < n:
            # JAX fixed its device count when it started: plan in a fresh process.
            return subprocess.call([sys.executable, "-m", "rewardjax", *argv],
                                   env=_with_cpu_devices(dict(os.environ), n))
    else:
        os.environ.update(_with_cpu_devices(dict(os.environ), n))

    from rewardjax import plan as plan_lib
    from rewardjax.models import CheckpointError, ConfigError
    from rewardjax.models.lora import LoraConfig
    from rewardjax.sharding import MeshConfig

    try:
        config = plan_lib.load_config(args.config)
        lora = None
        if args.lora_rank is not None:
            lora_kwargs = {"rank": args.lora_rank}
            if args.lora_alpha is not None:
                lora_kwargs["alpha"] = args.lora_alpha
            if args.lora_targets is not None:
                lora_kwargs["targets"] = tuple(t.strip() for t in args.lora_targets.split(","))
            lora = LoraConfig(**lora_kwargs)
        workload = plan_lib.Workload(
            kind=args.workload, batch=args.batch, length=args.length,
            completion_length=args.completion_length, micro_batches=args.micro_batches,
            param_dtype=args.param_dtype, compute_dtype=args.compute_dtype, lora=lora,
            remat=args.remat, scan_layers=args.scan_layers, kl_reference=args.kl_reference)
        device = plan_lib.accelerator(args.device) if args.device else None
        result = plan_lib.plan(config, MeshConfig(**args.mesh), workload)
    except (plan_lib.PlanError, ConfigError, CheckpointError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        print(plan_lib.format_plan(result, device))
    return 1 if device is not None and not result.fits(device) else 0


def _plan_parser(sub) -> None:
    p = sub.add_parser("plan", help=plan.__doc__.splitlines()[0],
                       description=plan.__doc__.replace("\n    ", " "))
    p.add_argument("--config", required=True,
                   help="a Hugging Face config.json (or its directory); no weights are read")
    p.add_argument("--mesh", type=_mesh_arg, default="data=1",
                   help="mesh shape, e.g. data=1,fsdp=64,tensor=1 (axes left out are 1)")
    p.add_argument("--workload", required=True, choices=("rl", "rm", "sft", "sample"))
    p.add_argument("--batch", type=int, required=True,
                   help="rows (rm: pairs) of the global batch")
    p.add_argument("--length", type=int, required=True,
                   help="tokens per row (sample: KV cache slots, prompt + new tokens)")
    p.add_argument("--completion-length", type=int,
                   help="rl: completion tokens of each row; sample: new tokens (default: "
                        "length / 2)")
    p.add_argument("--micro-batches", type=int, default=1)
    p.add_argument("--param-dtype", default="float32",
                   help="stored params (and optimizer state): float32, bfloat16, float16")
    p.add_argument("--compute-dtype", help="dtype of the params in the forward/backward pass")
    p.add_argument("--lora-rank", type=int, help="train LoRA adapters of this rank (rl, sft)")
    p.add_argument("--lora-alpha", type=float)
    p.add_argument("--lora-targets", help="comma-separated projections, e.g. q,v "
                                          "(default: q,k,v,o,gate,up,down)")
    p.add_argument("--remat", default="none", help="none, full or dots (train steps)")
    p.add_argument("--scan-layers", action="store_true",
                   help="lax.scan over the layers (train steps)")
    p.add_argument("--kl-reference", action="store_true",
                   help="rl: a frozen KL reference policy stays on the devices")
    p.add_argument("--device", help="check only this accelerator: v4, v5e, v5p, H100, H200")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")


def results(root: str) -> int:
    """Prints one Markdown table of every run's result.json under a directory
    (`rewardjax.results`)."""
    from rewardjax import results as results_lib

    try:
        rows = results_lib.collect(root)
    except results_lib.ResultsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not rows:
        print(f"error: no {results_lib.RESULT_FILE} under {root!r}", file=sys.stderr)
        return 1
    print(results_lib.format_table(rows, root=root), end="")
    return 0


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(prog="python -m rewardjax", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    q = sub.add_parser("quickstart", help=quickstart.__doc__.splitlines()[0])
    q.add_argument("--out", default="runs/quickstart")
    _plan_parser(sub)
    r = sub.add_parser("results", help=results.__doc__.splitlines()[0],
                       description=results.__doc__.replace("\n    ", " "))
    r.add_argument("root", nargs="?", default="runs", help="directory to search (default runs)")
    args = parser.parse_args(argv)
    if (args.command == "plan" and args.lora_rank is None
            and (args.lora_alpha is not None or args.lora_targets is not None)):
        parser.error("--lora-alpha / --lora-targets need --lora-rank (LoRA is on when a rank "
                     "is given)")
    if args.command == "quickstart":
        quickstart(args.out)
    elif args.command == "plan":
        return plan(args, argv)
    elif args.command == "results":
        return results(args.root)
    return 0


if __name__ == "__main__":
    sys.exit(main())
