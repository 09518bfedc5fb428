"""Multi-turn environments in the RL trainer and in evaluation.

`EnvRollouts` is the trainer's rollout extension point (`RLExtensions(rollouts=...)`):
each step's G rollouts per prompt come from `MultiTurnDriver` on the environment, and
their returns are the rewards; the loss trains on the model's own tokens only
(`SampledRollouts.loss_mask`) while attending to the observations. `env_greedy` runs
the environment greedily and keeps each transcript; `env_pass_at_1` is its pass@1;
`grpo_arm` is one arm of an experiment: pass@1 before and after GRPO with the environment;
`env_rollout_config` is the rollout budget of such an arm, sampled as its `RLConfig`;
`tool_warm_start` is the SFT on tool traces such an arm starts from, and
`warm_started_agent` the three together from an agent experiment's config.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Sequence

import jax
import numpy as np

from rewardjax.envs.base import Environment
from rewardjax.envs.rollout import MultiTurnDriver, RolloutConfig, as_mapping
from rewardjax.data.tokenizer import eos_ids
from rewardjax.envs.calculator import CALL_CLOSE, OUT_CLOSE, OUT_OPEN
from rewardjax.models.config import ModelConfig
from rewardjax.recipes.backbone import load_backbone
from rewardjax.recipes.warm_start import sft_warm_start, span_token_weights
from rewardjax.sampling.stepwise import StepConfig
from rewardjax.train import placement as placement_lib
from rewardjax.train.metrics import MetricsLogger
from rewardjax.train.rl import RLTrainer
from rewardjax.train.rl_extensions import RLExtensions, SampledRollouts


def env_rollout_config(rl, tokenizer, eos: Sequence[int], *, close_text: str, max_turns: int,
                       turn_tokens: int, observation_tokens: int) -> RolloutConfig:
    """Rollouts whose turns end at `close_text` (e.g. `</call>`) or an `eos` id, sampled
    as the `RLConfig` `rl` samples (`EnvRollouts` checks that the two agree): at most
    `max_turns` turns of `turn_tokens` each, `observation_tokens` per observation, and
    `rl.max_new_tokens` response slots in all."""
    close = tuple(int(t) for t in tokenizer(close_text, add_special_tokens=False)["input_ids"])
    if not close:
        raise ValueError(f"close_text = {close_text!r} tokenizes to no tokens")
    steps = StepConfig(delimiters=(close,), eos_ids=tuple(int(e) for e in eos),
                       step_tokens=turn_tokens, max_tokens=rl.max_new_tokens,
                       temperature=rl.temperature, top_k=rl.top_k, top_p=rl.top_p,
                       pad_id=tokenizer.pad_token_id, prompt_buckets=(rl.prompt_length,))
    return RolloutConfig(steps=steps, max_turns=max_turns, observation_tokens=observation_tokens)


def tool_warm_start(backbone, examples: Sequence, *, sft, buckets: tuple[int, ...], out_dir,
                    seed: int, observation_weight: float):
    """`recipes.sft_warm_start` on tool traces whose observations (`<out>...</out>\\n`)
    weigh `observation_weight` in the loss (0: left out, as the RL loss leaves them out,
    so the model learns to copy a tool's output rather than to predict it)."""
    weights = (None if observation_weight == 1.0 else
               span_token_weights(backbone.tokenizer, OUT_OPEN, OUT_CLOSE + "\n",
                                  weight=observation_weight))
    return sft_warm_start(backbone, examples, sft=sft, buckets=buckets, out_dir=out_dir,
                          seed=seed, token_weights=weights)


def warm_started_agent(cfg, traces: Sequence, out_dir):
    """(backbone, params, eos ids, rollout config) of an agent experiment whose config
    has `model`, `mesh`, `seed`, `sft`, `sft_buckets`, `observation_weight`, `rl`,
    `max_turns`, `turn_tokens` and `observation_tokens`: the backbone on its mesh, SFT on
    `traces` (`tool_warm_start`), and rollouts whose turns end at a tool call."""
    backbone = load_backbone(cfg.model, jax.random.key(cfg.seed), cfg.mesh)
    params = tool_warm_start(backbone, traces, sft=cfg.sft, buckets=cfg.sft_buckets,
                             out_dir=out_dir, seed=cfg.seed,
                             observation_weight=cfg.observation_weight)
    eos = eos_ids(backbone.tokenizer)
    rollout = env_rollout_config(cfg.rl, backbone.tokenizer, eos, close_text=CALL_CLOSE,
                                 max_turns=cfg.max_turns, turn_tokens=cfg.turn_tokens,
                                 observation_tokens=cfg.observation_tokens)
    return backbone, params, eos, rollout


@dataclasses.dataclass(frozen=True, kw_only=True)
class EnvRollouts:
    """(g) The RL trainer's rollouts from a multi-turn environment.

    Attributes:
      env: the environment.
      rollout: the driver's config; its sampling must be the trainer's
        (`steps.temperature/top_k/top_p` as `RLConfig`'s, `steps.max_tokens` =
        `RLConfig.max_new_tokens`, `steps.prompt_buckets` = (`RLConfig.prompt_length`,)),
        checked at the first step.
      correct_key: the `Transition.info` key whose per-rollout sum > 0.5 counts as
        correct (the trainer's `accuracy` and group filters read it).
    """

    env: Environment
    rollout: RolloutConfig
    correct_key: str = "env/correct"

    def __call__(self, trainer, policy, records: list, key: jax.Array) -> SampledRollouts:
        rl, steps = trainer.rl, self.rollout.steps
        for name, want, got in (("steps.max_tokens", rl.max_new_tokens, steps.max_tokens),
                                ("steps.temperature", rl.temperature, steps.temperature),
                                ("steps.top_k", rl.top_k, steps.top_k),
                                ("steps.top_p", rl.top_p, steps.top_p),
                                ("steps.prompt_buckets", (rl.prompt_length,),
                                 steps.prompt_buckets)):
            if want != got:
                raise ValueError(f"EnvRollouts: RolloutConfig.{name} is {got!r}; the trainer's "
                                 f"RLConfig needs {want!r}")
        driver = MultiTurnDriver(model_config=trainer.config, tokenizer=trainer.tokenizer,
                                 env=self.env, config=self.rollout)
        B, G = len(records), rl.group_size
        with placement_lib.context(trainer.placement):
            ro, metrics = driver.run(policy, records, key, copies=G)
        T = ro.tokens.shape[1]
        correct = np.array([i.get(self.correct_key, 0.0) > 0.5 for i in ro.infos]).reshape(B, G)
        texts = ["".join(t) for t in ro.transcripts]
        return SampledRollouts(
            prompt_tokens=ro.prompt_tokens[::G], prompt_mask=ro.prompt_mask[::G],
            tokens=ro.tokens.reshape(B, G, T), mask=ro.mask.reshape(B, G, T),
            loss_mask=ro.loss_mask.reshape(B, G, T),
            lengths=ro.mask.sum(-1).astype(np.int32).reshape(B, G),
            logprobs=ro.logprobs.reshape(B, G, T), texts=texts,
            rewards=ro.rewards.reshape(B, G), correct=correct, metrics=metrics)


def env_greedy(params, records: Sequence, *, model_config: ModelConfig, tokenizer,
               env: Environment, rollout: RolloutConfig, correct_key: str = "env/correct",
               batch_size: int = 64, placement=None) -> tuple[list[dict], dict[str, float]]:
    """Greedy rollouts with the environment in the loop: one sample per record (its
    `prompt`, `answer`, `transcript` (model text, observation, ...), `correct`, `reward`,
    `turns`), and the driver's metrics averaged over the batches (`turns/mean`,
    `env/calls`, ...)."""
    greedy = dataclasses.replace(rollout, steps=dataclasses.replace(rollout.steps,
                                                                    temperature=0.0))
    driver = MultiTurnDriver(model_config=model_config, tokenizer=tokenizer, env=env,
                             config=greedy)
    records = list(records)
    samples, sums, batches = [], {}, 0
    with placement_lib.context(placement):
        for i in range(0, len(records), batch_size):
            batch = records[i:i + batch_size]
            ro, metrics = driver.run(params, batch)
            for rec, transcript, info, reward, turns in zip(map(as_mapping, batch),
                                                            ro.transcripts, ro.infos,
                                                            ro.rewards, ro.turns):
                samples.append({"prompt": rec.get("prompt"), "answer": rec.get("answer"),
                                "transcript": list(transcript),
                                "correct": bool(info.get(correct_key, 0.0) > 0.5),
                                "reward": float(reward), "turns": int(turns)})
            for k, v in metrics.items():
                sums[k] = sums.get(k, 0.0) + v
            batches += 1
    return samples, {k: v / batches for k, v in sums.items()}


def env_pass_at_1(params, records: Sequence, **kwargs) -> dict[str, float]:
    """Greedy pass@1 with the environment in the loop (`env_greedy`'s keywords), and the
    driver's metrics averaged over the batches."""
    samples, metrics = env_greedy(params, records, **kwargs)
    return {"pass1": float(np.mean([s["correct"] for s in samples])), **metrics}


def grpo_arm(params, *, backbone, env: Environment, rollout: RolloutConfig, rl, optimizer,
             pool: Sequence, held_out: Sequence, eos: tuple[int, ...], out_dir, name: str,
             correct_key: str = "env/correct") -> tuple[dict[str, float], dict[str, float]]:
    """One arm of GRPO with an environment in the loop, from `params`: greedy pass@1 on
    `held_out` before and after `rl.steps` steps on prompts cycled in order from `pool`.

    "DeepSeekMath" (arXiv:2402.03300) GRPO through `EnvRollouts`. Writes the held-out
    transcripts to `<out_dir>/greedy_{sft,rl}_<name>.jsonl` (which failures RL fixed
    and which it left) and the RL metrics to `<out_dir>/rl_<name>.jsonl`. Returns the
    (before, after) `env_pass_at_1` figures. `backbone` is a `recipes.backbone.Backbone`.
    """
    out_dir = Path(out_dir)
    pool = list(pool)

    def evaluate(p, stage):
        samples, metrics = env_greedy(p, held_out, model_config=backbone.config,
                                      tokenizer=backbone.tokenizer, env=env, rollout=rollout,
                                      correct_key=correct_key, placement=backbone.placement)
        with open(out_dir / f"greedy_{stage}_{name}.jsonl", "w") as f:
            f.writelines(json.dumps(s) + "\n" for s in samples)
        return {"pass1": float(np.mean([s["correct"] for s in samples])), **metrics}

    def prompts_fn(step, rnd):
        first = (step * rl.max_sampling_rounds + rnd) * rl.prompts_per_step
        return [pool[(first + i) % len(pool)] for i in range(rl.prompts_per_step)]

    before = evaluate(params, "sft")
    print(f"[{name}] SFT start: greedy pass@1 {before['pass1']:.3f}", flush=True)
    trainer = RLTrainer(model_config=backbone.config, rl=rl, optimizer=optimizer,
                        tokenizer=backbone.tokenizer, prompts_fn=prompts_fn, reward_fn=None,
                        eos_ids=eos, placement=backbone.placement,
                        extensions=RLExtensions(rollouts=EnvRollouts(
                            env=env, rollout=rollout, correct_key=correct_key)),
                        **backbone.spec.apply_kwargs)
    state = trainer.init_state(params)
    logger = MetricsLogger(out_dir, name=f"rl_{name}", total_steps=rl.steps)
    for step in range(rl.steps):
        state, metrics = trainer.step(state, step)
        logger.log(step + 1, metrics, advance=1)
    logger.close()
    after = evaluate(trainer.policy(state), "rl")
    print(f"[{name}] after GRPO: greedy pass@1 {after['pass1']:.3f}", flush=True)
    return before, after
