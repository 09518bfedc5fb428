"""One GRPO step (rollout + reward + update): rewardjax's `RLTrainer` against TRL's
`GRPOTrainer` (PyTorch, CPU), in the same process, step by step in turn.

Both sides run the same work:

- weights: one random Qwen2-style model (hidden 512, 8 layers, 8 heads, 4 KV heads,
  MLP 1408, vocab 4096, tied embeddings, q/k/v biases, float32, ~26M params) built
  with `rewardjax.models.init_params`, written with `hf.save` and loaded into torch
  with `AutoModelForCausalLM.from_pretrained`; the script checks the two forwards agree.
- prompts: GSM8K train questions as one ChatML user turn, the question cut so that the
  rendered prompt is exactly --prompt-len tokens (the same ids on both sides, checked),
  --prompts per step, the same questions at the same step.
- rollout: --group completions per prompt at temperature 1 (no top-k/top-p), exactly
  --new-tokens each. rewardjax: `eos_ids=()` (no stop token). TRL always stops on the
  tokenizer's eos, so it gets `min_new_tokens = max_completion_length` (transformers
  masks the eos logit until then) and nothing stops early.
- reward: `gsm8k_reward` below (1 if the reference answer appears in the completion,
  plus the fraction of its characters that are digits) through each library's reward
  signature.
- update: GRPO advantages (group mean / group std), clipped surrogate (eps 0.2),
  token-mean over the batch (TRL `loss_type="dapo"`, rewardjax `reduction="token_mean"`),
  no reference model (TRL `beta=0.0`, rewardjax `kl_coef=0`), one AdamW step on the whole
  B*G batch (TRL: batch B*G, no accumulation, `num_iterations=1`; rewardjax: one epoch,
  one minibatch), the same lr, betas, eps, no weight decay, grad clip 1.0, constant lr;
  no gradient checkpointing, float32 on both sides.

Timing: wall clock of each full step, the first --warmup steps excluded (compilation in
rewardjax, first-call overheads in torch); medians over --steps steps. The two trainers
alternate (each TRL step is followed, outside its timed span, by one rewardjax step), so
on a shared machine both see the same load. `--threads N` limits both torch and XLA to
N intra-op threads (default: each library's own default, all cores). TRL's step is
`on_step_begin` -> `on_step_end` of a `TrainerCallback` (generation, reward, forward,
backward, clipping, optimizer step); its rollout share is the time spent in
`_generate_and_score_completions`. rewardjax's breakdown is its own `perf/rollout_s`
(sampling + decode + reward + advantages) and `perf/update_s`.

    python benchmarks/rl_step.py                 # 2 prompts x 8 completions x 128 tokens
    python benchmarks/rl_step.py --threads 1     # both libraries on one intra-op thread
    python benchmarks/rl_step.py --quick         # smoke run: 16 new tokens, 1 timed step
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import resources
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def add_model_args(p: argparse.ArgumentParser, *, threads: int) -> None:
    """The model shape, thread and XLA flags every benchmark shares, so their figures compare."""
    for name, default in (("hidden", 512), ("layers", 8), ("heads", 8), ("kv-heads", 4),
                          ("mlp", 1408), ("vocab", 4096)):
        p.add_argument(f"--{name}", type=int, default=default)
    p.add_argument("--threads", type=int, default=threads,
                   help="intra-op threads for both torch and XLA (0: each library's default, "
                        "all cores); on a loaded machine 1 can be faster for both")
    p.add_argument("--xla-flags", default="",
                   help="extra XLA_FLAGS for the rewardjax side (e.g. CPU backend options)")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=5, help="timed steps per system (after warm-up)")
    p.add_argument("--warmup", type=int, default=1, help="untimed first steps per system")
    p.add_argument("--prompts", type=int, default=2, help="prompts per step B")
    p.add_argument("--group", type=int, default=8, help="completions per prompt G")
    p.add_argument("--new-tokens", type=int, default=128, help="tokens per completion T")
    p.add_argument("--prompt-len", type=int, default=64, help="prompt tokens P")
    p.add_argument("--lr", type=float, default=1e-5)
    add_model_args(p, threads=0)
    p.add_argument("--skip-trl", action="store_true", help="rewardjax only")
    p.add_argument("--quick", action="store_true", help="smoke run: 16 new tokens, 1 timed step")
    p.add_argument("--out", default="runs/bench_rl_step", help="output directory")
    args = p.parse_args(argv)
    if args.quick:
        args.new_tokens, args.steps = 16, 1
    if args.steps < 1 or args.warmup < 1:
        p.error("--steps and --warmup must be >= 1")
    return args


# ----------------------------------------------------------------------------- shared inputs


def gsm8k_reward(completion: str, answer: str) -> float:
    """1 if the reference answer appears in the completion, plus its digit fraction.

    The digit term keeps rewards varied inside a group (a random policy never answers),
    so the advantages, and the update, are not all zero.
    """
    hit = float(answer in completion.replace(",", ""))
    return hit + sum(c.isdigit() for c in completion) / max(len(completion), 1)


def gsm8k_records(tokenizer, count: int, length: int) -> list[dict]:
    """`count` records {prompt, answer} whose chat-rendered prompt is exactly `length` tokens."""
    from rewardjax.data.encoding import encode_prompt

    path = Path(str(resources.files("rewardjax"))) / "assets/data/gsm8k/train.jsonl"
    records = []
    for line in path.read_text().splitlines():
        row = json.loads(line)
        ids = tokenizer(row["question"])["input_ids"]
        # Cut the question until the rendered prompt fits; keep it only at exactly `length`
        # (a BPE re-encode of a cut text can land one token off).
        for k in range(len(ids), 0, -1):
            text = tokenizer.decode(ids[:k])
            n = len(encode_prompt(tokenizer, text))
            if n <= length:
                break
        if n == length:
            answer = row["answer"].split("####")[-1].strip().replace(",", "")
            records.append({"prompt": text, "answer": answer})
        if len(records) == count:
            return records
    raise ValueError(f"only {len(records)} GSM8K questions render to exactly {length} tokens")


def load_now() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


# ----------------------------------------------------------------------------- rewardjax


class RewardjaxSteps:
    """rewardjax's `RLTrainer` on the benchmark's config, one step per `step()` call."""

    def __init__(self, args, config, params, tokenizer, records):
        import jax
        import numpy as np

        from rewardjax.train import OptimizerConfig
        from rewardjax.train.rl import RLConfig, RLTrainer

        self.args, self._compiles = args, 0
        jax.monitoring.register_event_duration_secs_listener(self._on_event)
        B, total = args.prompts, args.warmup + args.steps
        rl = RLConfig(steps=total, prompts_per_step=B, group_size=args.group,
                      max_new_tokens=args.new_tokens, temperature=1.0, top_k=0, top_p=1.0,
                      prompt_length=args.prompt_len, epochs=1, minibatches=1, micro_batches=1,
                      advantage="grpo", scale_by_std=True, std_scope="group",
                      reduction="token_mean", eps_low=0.2, eps_high=0.2, kl_coef=0.0,
                      entropy_coef=0.0, accuracy_reward=None, seed=0)
        # min_lr_ratio=1: a constant lr, as TRL's lr_scheduler_type="constant".
        optimizer = OptimizerConfig(lr=args.lr, warmup_steps=0, total_steps=total,
                                    min_lr_ratio=1.0, weight_decay=0.0, b1=0.9, b2=0.999,
                                    eps=1e-8, grad_clip=1.0)

        def reward_fn(prompts, completions, *, answer, **fields):
            return np.array([gsm8k_reward(c, a) for c, a in zip(completions, answer)], np.float32)

        self.trainer = RLTrainer(model_config=config, rl=rl, optimizer=optimizer,
                                 tokenizer=tokenizer,
                                 prompts_fn=lambda step, rnd: records[step * B:(step + 1) * B],
                                 reward_fn=reward_fn, eos_ids=())
        self.state = self.trainer.init_state(params)
        self.rows: list[dict] = []

    def _on_event(self, event, duration, **kwargs):
        if event == "/jax/core/compile/backend_compile_duration":
            self._compiles += 1

    def step(self) -> dict:
        import jax

        step, before = len(self.rows), self._compiles
        start = time.perf_counter()
        self.state, metrics = self.trainer.step(self.state, step)
        jax.block_until_ready(self.state)
        wall = time.perf_counter() - start
        row = {"wall_s": wall, "rollout_s": metrics["perf/rollout_s"],
               "update_s": metrics["perf/update_s"], "compiles": self._compiles - before,
               "length": metrics["response/length"], "reward": metrics["reward/mean"],
               "loss": metrics["loss"], "load1": os.getloadavg()[0]}
        self.rows.append(row)
        tag = "warm-up" if step < self.args.warmup else "timed"
        print(f"  rewardjax step {step} ({tag}): {wall:6.2f}s  rollout {row['rollout_s']:6.2f}s  "
              f"update {row['update_s']:6.2f}s  compiles {row['compiles']}  length "
              f"{row['length']:.0f}  reward {row['reward']:.3f}  load {row['load1']:.2f}",
              flush=True)
        return row


# ----------------------------------------------------------------------------- TRL


def trl_config(args, out_dir: Path):
    from trl import GRPOConfig

    # Every field that matters for the comparison is set, even where it is TRL's default.
    fields = dict(
        output_dir=str(out_dir / "trl"), use_cpu=True, bf16=False, fp16=False,
        gradient_checkpointing=False, seed=0, report_to="none", save_strategy="no",
        logging_steps=1, disable_tqdm=True, dataloader_num_workers=0,
        max_steps=args.warmup + args.steps,
        # one optimizer step per rollout of B prompts x G completions
        per_device_train_batch_size=args.prompts * args.group, gradient_accumulation_steps=1,
        num_generations=args.group, num_iterations=1, shuffle_dataset=False,
        # rollout: plain sampling at temperature 1, exactly T tokens
        use_vllm=False, max_completion_length=args.new_tokens, temperature=1.0, top_p=1.0,
        top_k=0, min_p=None, repetition_penalty=1.0,
        generation_kwargs={"min_new_tokens": args.new_tokens},
        # objective: GRPO group-normalized advantages, clipped surrogate, token mean,
        # no reference model
        beta=0.0, epsilon=0.2, scale_rewards="group", loss_type="dapo",
        importance_sampling_level="token", mask_truncated_completions=False,
        top_entropy_quantile=1.0, log_completions=False,
        # optimizer: AdamW, constant lr, clip 1.0
        optim="adamw_torch", learning_rate=args.lr, lr_scheduler_type="constant",
        warmup_steps=0, weight_decay=0.0, adam_beta1=0.9, adam_beta2=0.999, adam_epsilon=1e-8,
        max_grad_norm=1.0,
    )
    return GRPOConfig(**fields), fields


def run_trl(args, model_dir: Path, tokenizer, records, out_dir: Path, between=None) -> dict:
    """TRL's GRPOTrainer for warmup + steps steps; `between()` runs after each step,
    outside the timed span (the interleaved rewardjax step)."""
    import datasets
    import torch
    import transformers
    from trl import GRPOTrainer

    grpo_config, fields = trl_config(args, out_dir)
    model = transformers.AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)

    def reward_fn(prompts, completions, answer, **fields):
        return [gsm8k_reward(c[0]["content"] if isinstance(c, list) else c, a)
                for c, a in zip(completions, answer)]

    dataset = datasets.Dataset.from_list(
        [{"prompt": [{"role": "user", "content": r["prompt"]}], "answer": r["answer"]}
         for r in records])
    rows: list[dict] = []
    pending: dict = {}

    class Timed(GRPOTrainer):
        """Records each rollout's time (generation + reward + advantages) and shapes."""

        def _generate_and_score_completions(self, inputs):
            start = time.perf_counter()
            out = super()._generate_and_score_completions(inputs)
            pending.update(
                rollout_s=time.perf_counter() - start,
                length=float(out["completion_mask"].sum(1).float().mean()),
                prompt_len=int(out["prompt_ids"].shape[1]),
                first_prompt=inputs[0]["prompt"][-1]["content"])
            return out

    class StepTimer(transformers.TrainerCallback):
        def on_step_begin(self, args_, state, control, **kwargs):
            pending.clear()
            pending["start"] = time.perf_counter()

        def on_step_end(self, args_, state, control, **kwargs):
            wall = time.perf_counter() - pending.pop("start")
            step = len(rows)
            row = {"wall_s": wall, "update_s": wall - pending["rollout_s"], **pending,
                   "load1": os.getloadavg()[0]}
            row["same_prompts"] = row.pop("first_prompt") == records[step * args.prompts]["prompt"]
            rows.append(row)
            tag = "warm-up" if step < args.warmup else "timed"
            print(f"  TRL       step {step} ({tag}): {wall:6.2f}s  rollout {row['rollout_s']:6.2f}s  "
                  f"update {row['update_s']:6.2f}s  length {row['length']:.0f}  prompt "
                  f"{row['prompt_len']}  load {row['load1']:.2f}", flush=True)
            if between is not None:
                between()

    trainer = Timed(model=model, reward_funcs=reward_fn, args=grpo_config, train_dataset=dataset,
                    processing_class=tokenizer, callbacks=[StepTimer()])
    trainer.remove_callback(transformers.PrinterCallback)  # its log dicts; we print our own lines
    trainer.train()
    logs = [h for h in trainer.state.log_history if "loss" in h and "reward" in h]
    for row, log in zip(rows, logs):
        row.update(reward=log["reward"], loss=log["loss"])
    return {"rows": rows, "timed": rows[args.warmup:], "config": fields}


# ----------------------------------------------------------------------------- main


def check_parity(config, params, model_dir: Path, tokenizer, records, prompt_len: int) -> tuple[float, bool]:
    """Max |logit difference| between the two forwards, and whether TRL's prompt ids
    (its chat-template call) equal rewardjax's."""
    import numpy as np
    import torch
    import transformers

    from rewardjax.data.encoding import encode_prompt
    from rewardjax.models import apply

    ours = np.stack([encode_prompt(tokenizer, r["prompt"]) for r in records[:2]])
    theirs = tokenizer.apply_chat_template(
        [[{"role": "user", "content": r["prompt"]}] for r in records[:2]],
        add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"]
    same_ids = ours.shape[1] == prompt_len and all(list(a) == list(b) for a, b in zip(ours, theirs))
    model = transformers.AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
    with torch.inference_mode():
        hf_logits = model(torch.from_numpy(ours.astype(np.int64))).logits.numpy()
    jx_logits, _ = apply(params, ours.astype(np.int32), config=config)
    return float(np.max(np.abs(np.asarray(jx_logits) - hf_logits))), same_ids


def set_threads(threads: int, xla_flags: str) -> None:
    """Thread counts and XLA flags, before jax initializes its CPU client."""
    flags = [os.environ.get("XLA_FLAGS", ""), xla_flags]
    if threads:
        # The same limit for both libraries; XLA's Eigen pool is single-threaded at 1.
        flags.append(f"--xla_cpu_multi_thread_eigen={'false' if threads == 1 else 'true'} "
                     f"intra_op_parallelism_threads={threads}")
    os.environ["XLA_FLAGS"] = " ".join(f for f in flags if f).strip()


def run_system(args, runners: dict) -> None:
    """A benchmark's child process: runs `args.system`'s measurement in `args.work` and
    writes its figures (plus the load seen) where `spawn_system` reads them."""
    work = Path(args.work)
    if args.system == "rewardjax":
        set_threads(args.threads, args.xla_flags)
    out = runners[args.system](args, work)
    out["load1"] = os.getloadavg()[0]
    k = len(list(work.glob(f"{args.system}_*.json")))
    (work / f"{args.system}_{k}.json").write_text(json.dumps(out))


def spawn_system(script: str, argv: list[str], system: str, work: Path, run: int) -> dict:
    """Runs `script` for one system in a fresh process (torch's and XLA's threads must not
    share one) and returns the figures of its `run`-th call."""
    subprocess.run([sys.executable, script, *argv, "--system", system, "--work", str(work)],
                   check=True)
    return json.loads((work / f"{system}_{run}.json").read_text())


def main(argv=None):
    args = parse_args(argv)
    set_threads(args.threads, args.xla_flags)
    import jax
    import torch
    import transformers
    import trl

    from rewardjax.data.tokenizer import default_tokenizer
    from rewardjax.models import ModelConfig, hf, init_params
    from rewardjax.train import write_result

    if args.threads:
        torch.set_num_threads(args.threads)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = default_tokenizer()
    config = ModelConfig(model_type="qwen2", vocab_size=args.vocab, hidden_size=args.hidden,
                         intermediate_size=args.mlp, num_layers=args.layers, num_heads=args.heads,
                         num_kv_heads=args.kv_heads, head_dim=args.hidden // args.heads,
                         qkv_bias=True, tie_word_embeddings=True, rope_theta=1e6,
                         pad_token_id=tokenizer.pad_token_id, eos_token_id=None)
    params = init_params(config, jax.random.key(0))
    B, G, T, P = args.prompts, args.group, args.new_tokens, args.prompt_len
    total = args.warmup + args.steps
    records = gsm8k_records(tokenizer, B * total, P)

    load_start = os.getloadavg()
    print(f"model: qwen2 D={config.hidden_size} L={config.num_layers} N={config.num_heads} "
          f"K={config.num_kv_heads} F={config.intermediate_size} V={config.vocab_size} tied "
          f"float32, {config.num_params() / 1e6:.1f}M params")
    print(f"jax {jax.__version__} ({jax.default_backend()}, {jax.device_count()} devices), torch "
          f"{torch.__version__} ({torch.get_num_threads()} threads), transformers "
          f"{transformers.__version__}, trl {trl.__version__}, {os.cpu_count()} cpus, "
          f"{platform.processor() or platform.machine()}")
    print(f"XLA_FLAGS: {os.environ.get('XLA_FLAGS') or '(none)'}")
    print(f"shapes: {B} prompts x {G} completions x {T} new tokens, prompts {P} tokens; "
          f"{args.warmup} warm-up + {args.steps} timed steps each; load {load_now()}")

    results: dict = {"prompts": B, "group": G, "new_tokens": T, "prompt_len": P,
                     "steps": args.steps, "threads": args.threads or os.cpu_count()}
    jx = RewardjaxSteps(args, config, params, tokenizer, records)
    tr = None
    with tempfile.TemporaryDirectory() as tmp:
        if args.skip_trl:
            print("\nrewardjax RLTrainer", flush=True)
            for _ in range(total):
                jx.step()
        else:
            model_dir = Path(tmp) / "model"
            hf.save(model_dir, config, params)
            tokenizer.save_pretrained(str(model_dir))
            max_diff, same_ids = check_parity(config, params, model_dir, tokenizer, records, P)
            print(f"parity: max |logits_jax - logits_torch| = {max_diff:.2e}; "
                  f"prompt ids equal: {same_ids}")
            # A string: write_result rounds floats to 4 decimals.
            results.update(logit_max_diff=f"{max_diff:.1e}", same_prompt_ids=same_ids)
            # Interleaved, so both see the same machine load: each TRL step is followed
            # (outside its timed span) by one rewardjax step.
            print("\nTRL GRPOTrainer and rewardjax RLTrainer, interleaved", flush=True)
            tr = run_trl(args, model_dir, tokenizer, records, out_dir, between=jx.step)

    def med(rows, key):
        return statistics.median(r[key] for r in rows[args.warmup:])

    results.update(jax_step_s=med(jx.rows, "wall_s"), jax_rollout_s=med(jx.rows, "rollout_s"),
                   jax_update_s=med(jx.rows, "update_s"), jax_first_step_s=jx.rows[0]["wall_s"],
                   jax_timed_compiles=sum(r["compiles"] for r in jx.rows[args.warmup:]))
    if tr is not None:
        rows = tr["rows"]
        results.update(trl_step_s=med(rows, "wall_s"), trl_rollout_s=med(rows, "rollout_s"),
                       trl_update_s=med(rows, "update_s"), trl_first_step_s=rows[0]["wall_s"],
                       same_prompts=all(r["same_prompts"] for r in rows),
                       same_lengths=all(r["length"] == T for r in rows + jx.rows))
        results.update(speedup=results["trl_step_s"] / results["jax_step_s"],
                       rollout_speedup=results["trl_rollout_s"] / results["jax_rollout_s"],
                       update_speedup=results["trl_update_s"] / results["jax_update_s"])
    load_end = os.getloadavg()
    results.update(load1_start=load_start[0], load1_end=load_end[0], cpus=os.cpu_count())

    print(f"\nmedian of {args.steps} timed steps (s)   step   rollout   update")
    print(f"  rewardjax                     {results['jax_step_s']:7.2f} "
          f"{results['jax_rollout_s']:8.2f} {results['jax_update_s']:8.2f}"
          f"   (first step {results['jax_first_step_s']:.1f}s, "
          f"{results['jax_timed_compiles']} compilations in timed steps)")
    if tr is not None:
        print(f"  TRL                           {results['trl_step_s']:7.2f} "
              f"{results['trl_rollout_s']:8.2f} {results['trl_update_s']:8.2f}"
              f"   (first step {results['trl_first_step_s']:.1f}s)")
        print(f"  speedup (TRL / rewardjax)     {results['speedup']:6.2f}x "
              f"{results['rollout_speedup']:7.2f}x {results['update_speedup']:7.2f}x   "
              f"(target >= 3x)")
        print(f"  same prompts each step: {results['same_prompts']}; every completion "
              f"{T} tokens on both sides: {results['same_lengths']}")
    print(f"load average (1 min) at start {load_start[0]:.2f}, at end {load_end[0]:.2f} "
          f"on {os.cpu_count()} cpus")
    details = {"args": vars(args), "xla_flags": os.environ.get("XLA_FLAGS", ""),
               "rewardjax": jx.rows}
    if tr is not None:
        details.update(trl=tr["rows"], trl_config=tr["config"])
    (out_dir / "steps.json").write_text(json.dumps(details, indent=2, default=str))
    keys = ["jax_step_s", "trl_step_s", "speedup", "jax_rollout_s", "jax_update_s",
            "trl_rollout_s", "trl_update_s", "rollout_speedup", "update_speedup",
            "jax_timed_compiles", "logit_max_diff", "same_prompt_ids", "same_prompts",
            "same_lengths", "prompts", "group", "new_tokens", "prompt_len", "steps", "threads",
            "load1_start", "load1_end", "cpus"]
    return write_result(out_dir, {k: results[k] for k in keys if k in results})


if __name__ == "__main__":
    main()
