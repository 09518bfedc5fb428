"""Bradley–Terry reward-model training throughput (pairs/s): rewardjax's jitted
`make_train_step(pairwise_loss)` against TRL's `RewardTrainer` (PyTorch, CPU), each
system in its own process, runs alternating A/B/A/B.

Both sides train the same model on the same pairs:

- weights: one random Qwen2-style backbone (hidden 512, 8 layers, 8 heads, 4 KV heads,
  MLP 1408, vocab 4096, tied embeddings, q/k/v biases, float32, ~26M params) built with
  `rewardjax.models.init_params` and written with `hf.save`. rewardjax reads it back with
  `hf.load` and adds a scalar head (`init_reward_model`, D weights + 1 bias); torch loads
  it with `AutoModelForSequenceClassification.from_pretrained(num_labels=1)` (a fresh
  D-weight `score` head, no bias). Both parameter counts are reported.
- data: --batch pairs per step, each response of a uniformly drawn length in
  [--min-len, --max-len] (random token ids, never the pad id), the same pairs in the same
  order on both sides. rewardjax gets `preference_pipeline`-shaped batches (chosen and
  rejected dicts of tokens / attention_mask, left-padded to --max-len, a leading
  micro-batch axis of 1); TRL gets pre-tokenized `chosen_ids` / `rejected_ids` and pads
  each batch (right) to its longest sequence, as its collator does (a sequential sampler
  replaces its shuffling so the batches are the same).
- update: −log σ(r_c − r_r) averaged over the pairs, one AdamW step per batch, the same
  lr, betas, eps, no weight decay, constant lr, global-norm clip 1.0, float32, no
  gradient checkpointing, no dropout (TRL's `RewardConfig` defaults bf16 and
  gradient checkpointing on; both are switched off).

Timing: wall clock per optimizer step, the first --warmup steps excluded (XLA
compilation; torch's first-call overheads). rewardjax: `train_step` including the host
-> device copy of the batch, until the new state is ready. TRL: `on_step_begin` ->
`on_step_end` of a `TrainerCallback` (forward, backward, clip, optimizer step).
Throughput = batch / median step time over all timed steps of all runs of a system.
torch's OpenMP threads compete with XLA's when both live in one process, so each run is
a fresh process (`--system`), and the runs alternate (--runs of each); --threads sets
both torch's and XLA's intra-op threads.

    python benchmarks/reward_model.py                 # 2 runs each x 10 timed steps, 2 threads
    python benchmarks/reward_model.py --quick         # smoke run: 1 run each, 2 timed steps
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from rl_step import add_model_args, load_now, run_system, spawn_system

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

SYSTEMS = ("rewardjax", "trl")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=10, help="timed steps per run (after warm-up)")
    p.add_argument("--warmup", type=int, default=2, help="untimed first steps per run")
    p.add_argument("--runs", type=int, default=2, help="runs (processes) per system, alternating")
    p.add_argument("--batch", type=int, default=8, help="preference pairs per step")
    p.add_argument("--max-len", type=int, default=256, help="longest response, tokens")
    p.add_argument("--min-len", type=int, default=64, help="shortest response, tokens")
    p.add_argument("--lr", type=float, default=1e-5)
    add_model_args(p, threads=2)
    p.add_argument("--quick", action="store_true", help="smoke run: 1 run each, 2 timed steps")
    p.add_argument("--out", default="runs/bench_reward_model", help="output directory")
    p.add_argument("--system", choices=SYSTEMS, help=argparse.SUPPRESS)  # child process
    p.add_argument("--work", help=argparse.SUPPRESS)  # child: shared model + data directory
    args = p.parse_args(argv)
    if args.quick:
        args.runs, args.steps, args.warmup = 1, 2, 2  # warm-up 2: the step compiles twice
    if args.steps < 1 or args.warmup < 1 or args.runs < 1:
        p.error("--steps, --warmup and --runs must be >= 1")
    if not 1 <= args.min_len <= args.max_len:
        p.error(f"need 1 <= --min-len ({args.min_len}) <= --max-len ({args.max_len})")
    return args


def model_config(args):
    from rewardjax.models import ModelConfig

    return ModelConfig(model_type="qwen2", vocab_size=args.vocab, hidden_size=args.hidden,
                       intermediate_size=args.mlp, num_layers=args.layers, num_heads=args.heads,
                       num_kv_heads=args.kv_heads, head_dim=args.hidden // args.heads,
                       qkv_bias=True, tie_word_embeddings=True, rope_theta=1e6,
                       pad_token_id=0, eos_token_id=None)


def prepare(args, work: Path) -> None:
    """The shared HF model directory and `pairs.npz` (ids [N, max_len], lengths [N])."""
    import jax
    import numpy as np

    from rewardjax.data.tokenizer import default_tokenizer
    from rewardjax.models import hf, init_params

    config = model_config(args)
    hf.save(work / "model", config, init_params(config, jax.random.key(0)))
    default_tokenizer().save_pretrained(str(work / "model"))
    rng = np.random.default_rng(0)
    n = args.batch * (args.warmup + args.steps)
    lengths = {s: rng.integers(args.min_len, args.max_len + 1, size=n) for s in ("chosen", "rejected")}
    # ids from 1: 0 is the pad id, and HF's classifier finds each row's last token by it
    ids = {s: rng.integers(1, args.vocab, size=(n, args.max_len)) for s in lengths}
    np.savez(work / "pairs.npz", **{f"{s}_ids": ids[s] for s in ids},
             **{f"{s}_len": lengths[s] for s in lengths})


# ----------------------------------------------------------------------------- rewardjax


def run_rewardjax(args, work: Path) -> dict:
    import functools

    import jax
    import numpy as np

    from rewardjax.models import hf
    from rewardjax.train import OptimizerConfig, init_state, make_train_step
    from rewardjax.train.reward_model import init_reward_model, pairwise_loss

    config, backbone = hf.load(work / "model")
    params = init_reward_model(backbone, jax.random.key(1), config=config)
    total, B, T = args.warmup + args.steps, args.batch, args.max_len
    # min_lr_ratio=1: a constant lr, as TRL's lr_scheduler_type="constant".
    opt_config = OptimizerConfig(lr=args.lr, warmup_steps=0, total_steps=total, min_lr_ratio=1.0,
                                 weight_decay=0.0, b1=0.9, b2=0.999, eps=1e-8, grad_clip=1.0)
    optimizer = opt_config.make()
    train_step = make_train_step(functools.partial(pairwise_loss, config=config), optimizer,
                                 config=opt_config)
    state = init_state(params, optimizer)
    pairs = np.load(work / "pairs.npz")

    def side(name, rows):
        tokens = np.zeros((1, B, T), np.int32)
        mask = np.zeros((1, B, T), np.int32)
        for b, i in enumerate(rows):
            n = int(pairs[f"{name}_len"][i])
            tokens[0, b, T - n:] = pairs[f"{name}_ids"][i, :n]  # left padding, as the pipeline
            mask[0, b, T - n:] = 1
        return {"tokens": tokens, "attention_mask": mask}

    compiles = []
    jax.monitoring.register_event_duration_secs_listener(
        lambda event, duration, **kw: compiles.append(event)
        if event == "/jax/core/compile/backend_compile_duration" else None)
    rows = []
    for step in range(total):
        idx = range(step * B, (step + 1) * B)
        batch = {"chosen": side("chosen", idx), "rejected": side("rejected", idx)}
        before = len(compiles)
        start = time.perf_counter()
        state, metrics = train_step(state, batch)
        jax.block_until_ready((state, metrics))
        rows.append({"wall_s": time.perf_counter() - start, "padded_len": T,
                     "compiles": len(compiles) - before, "loss": float(metrics["loss"])})
    n_params = sum(x.size for x in jax.tree.leaves(state.params))
    return {"rows": rows, "params": int(n_params), "version": jax.__version__}


# ----------------------------------------------------------------------------- TRL


def run_trl(args, work: Path) -> dict:
    import datasets
    import numpy as np
    import torch
    import transformers
    import trl
    from trl import RewardConfig, RewardTrainer

    if args.threads:
        torch.set_num_threads(args.threads)
    transformers.logging.set_verbosity_error()  # the fresh `score` head's init notice
    model = transformers.AutoModelForSequenceClassification.from_pretrained(
        str(work / "model"), num_labels=1, dtype=torch.float32)
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(work / "model"))
    pairs = np.load(work / "pairs.npz")
    dataset = datasets.Dataset.from_dict({
        f"{s}_ids": [pairs[f"{s}_ids"][i, :n].tolist() for i, n in enumerate(pairs[f"{s}_len"])]
        for s in ("chosen", "rejected")})
    total = args.warmup + args.steps
    reward_config = RewardConfig(
        output_dir=str(work / "trl"), use_cpu=True, bf16=False, fp16=False,
        gradient_checkpointing=False, disable_dropout=True, seed=0, report_to="none",
        save_strategy="no", logging_steps=total, disable_tqdm=True, dataloader_num_workers=0,
        max_steps=total, per_device_train_batch_size=args.batch, gradient_accumulation_steps=1,
        max_length=args.max_len, center_rewards_coefficient=None,
        optim="adamw_torch", learning_rate=args.lr, lr_scheduler_type="constant",
        warmup_steps=0, weight_decay=0.0, adam_beta1=0.9, adam_beta2=0.999, adam_epsilon=1e-8,
        max_grad_norm=1.0)
    rows: list[dict] = []
    pending: dict = {}

    class Sequential(RewardTrainer):
        """The pairs in file order (as rewardjax sees them); records each batch's width."""

        def _get_train_sampler(self, *args_, **kwargs):
            return torch.utils.data.SequentialSampler(self.train_dataset)

        def compute_loss(self, model, inputs, *args_, **kwargs):
            pending["padded_len"] = int(inputs["input_ids"].shape[1])
            return super().compute_loss(model, inputs, *args_, **kwargs)

    class StepTimer(transformers.TrainerCallback):
        def on_step_begin(self, args_, state, control, **kwargs):
            pending["start"] = time.perf_counter()

        def on_step_end(self, args_, state, control, **kwargs):
            rows.append({"wall_s": time.perf_counter() - pending.pop("start"),
                         "padded_len": pending.pop("padded_len")})

    trainer = Sequential(model=model, args=reward_config, train_dataset=dataset,
                         processing_class=tokenizer, callbacks=[StepTimer()])
    trainer.remove_callback(transformers.PrinterCallback)
    trainer.train()
    return {"rows": rows, "params": sum(p.numel() for p in model.parameters()),
            "version": f"trl {trl.__version__}, torch {torch.__version__}, "
                       f"{torch.get_num_threads()} threads"}


# ----------------------------------------------------------------------------- main


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    if args.system:
        return run_system(args, {"rewardjax": run_rewardjax, "trl": run_trl})
    from rewardjax.train import write_result

    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    load_start = os.getloadavg()
    config = model_config(args)
    print(f"model: qwen2 D={config.hidden_size} L={config.num_layers} N={config.num_heads} "
          f"K={config.num_kv_heads} F={config.intermediate_size} V={config.vocab_size} tied "
          f"float32, backbone {config.num_params() / 1e6:.2f}M params")
    print(f"{args.batch} pairs/step, responses {args.min_len}-{args.max_len} tokens; "
          f"{args.runs} runs x ({args.warmup} warm-up + {args.steps} timed steps) per system, "
          f"threads {args.threads or 'default'}; {os.cpu_count()} cpus, load {load_now()}",
          flush=True)
    runs: dict[str, list[dict]] = {s: [] for s in SYSTEMS}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        prepare(args, work)
        for r in range(args.runs):
            for system in SYSTEMS:
                start = time.perf_counter()
                out = spawn_system(__file__, argv, system, work, r)
                runs[system].append(out)
                timed = [row["wall_s"] for row in out["rows"][args.warmup:]]
                print(f"  run {r} {system:9s}: median step {statistics.median(timed):6.3f}s "
                      f"({args.batch / statistics.median(timed):6.2f} pairs/s), first step "
                      f"{out['rows'][0]['wall_s']:6.2f}s, process {time.perf_counter() - start:5.1f}s, "
                      f"load {out['load1']:.2f}", flush=True)

    def timed(system, key):
        return [row[key] for out in runs[system] for row in out["rows"][args.warmup:]]

    jx_s, tr_s = statistics.median(timed("rewardjax", "wall_s")), statistics.median(timed("trl", "wall_s"))
    results = {
        "jax_pairs_s": args.batch / jx_s, "trl_pairs_s": args.batch / tr_s, "speedup": tr_s / jx_s,
        "jax_step_s": jx_s, "trl_step_s": tr_s,
        "jax_runs_pairs_s": "/".join(
            f"{args.batch / statistics.median(r['wall_s'] for r in o['rows'][args.warmup:]):.2f}"
            for o in runs["rewardjax"]),
        "trl_runs_pairs_s": "/".join(
            f"{args.batch / statistics.median(r['wall_s'] for r in o['rows'][args.warmup:]):.2f}"
            for o in runs["trl"]),
        "jax_timed_compiles": sum(timed("rewardjax", "compiles")),
        "jax_padded_len": args.max_len, "trl_mean_padded_len": statistics.mean(timed("trl", "padded_len")),
        "jax_params": runs["rewardjax"][0]["params"], "trl_params": runs["trl"][0]["params"],
        "batch": args.batch, "steps": args.steps, "runs": args.runs,
        "threads": args.threads or os.cpu_count(), "load1_start": load_start[0],
        "load1_end": os.getloadavg()[0], "cpus": os.cpu_count()}
    print(f"\nrewardjax (jax {runs['rewardjax'][0]['version']}): {results['jax_pairs_s']:.2f} pairs/s; "
          f"TRL ({runs['trl'][0]['version']}): {results['trl_pairs_s']:.2f} pairs/s; "
          f"speedup {results['speedup']:.2f}x (target >= 1.5x)")
    (out_dir / "steps.json").write_text(json.dumps({"args": vars(args), "runs": runs}, indent=2))
    return write_result(out_dir, results)


if __name__ == "__main__":
    main()
