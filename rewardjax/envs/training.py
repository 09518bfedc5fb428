"""Multi-turn environments in the RL trainer and in evaluation.

`EnvRollouts` is the trainer's rollout extension point (`RLExtensions(rollouts=...)`):
each step's G rollouts per prompt come from `MultiTurnDriver` on the environment, and
their returns are the rewards; the loss trains on the model's own tokens only
(`SampledRollouts.loss_mask`) while attending to the observations. `env_pass_at_1` is
greedy pass@1 with the environment in the loop.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import jax
import numpy as np

from rewardjax.envs.base import Environment
from rewardjax.envs.rollout import MultiTurnDriver, RolloutConfig
from rewardjax.models.config import ModelConfig
from rewardjax.train import placement as placement_lib
from rewardjax.train.rl_extensions import SampledRollouts


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


def env_pass_at_1(params, records: Sequence, *, model_config: ModelConfig, tokenizer,
                  env: Environment, rollout: RolloutConfig, correct_key: str = "env/correct",
                  batch_size: int = 64, placement=None) -> dict[str, float]:
    """Greedy pass@1 with the environment in the loop, and the driver's metrics
    averaged over the batches (`turns/mean`, `env/calls`, ...)."""
    greedy = dataclasses.replace(rollout, steps=dataclasses.replace(rollout.steps,
                                                                    temperature=0.0))
    driver = MultiTurnDriver(model_config=model_config, tokenizer=tokenizer, env=env,
                             config=greedy)
    records = list(records)
    correct, sums, batches = [], {}, 0
    with placement_lib.context(placement):
        for i in range(0, len(records), batch_size):
            ro, metrics = driver.run(params, records[i:i + batch_size])
            correct += [x.get(correct_key, 0.0) > 0.5 for x in ro.infos]
            for k, v in metrics.items():
                sums[k] = sums.get(k, 0.0) + v
            batches += 1
    return {"pass1": float(np.mean(correct)), **{k: v / batches for k, v in sums.items()}}
