"""The tiny RL setup with every stateful extension point in use (an online implicit PRM,
a group filter with state), checkpointed: `python -m tests.train.rl_ext_worker OUT_DIR`."""

import sys
from pathlib import Path

import jax
import numpy as np

from rewardjax.rewards.dense import ImplicitPRMConfig, ImplicitPRMReward
from rewardjax.train import Checkpointer, OptimizerConfig
from rewardjax.train.rl import RLTrainer
from rewardjax.train.rl_extensions import GroupFilter, PrimeAdvantage, RLExtensions
from tests.train.rl_setup import tiny_trainer


def counting_filter() -> GroupFilter:
    """Keeps every group and counts the rewards it has seen (state that must resume)."""
    def keep(state, rewards):
        return {"seen": state["seen"] + rewards.sum()}, np.ones(rewards.shape[0], bool)

    return GroupFilter(keep=keep, init=lambda: {"seen": np.zeros((), np.float32)})


def extended_trainer(**rl):
    base, params = tiny_trainer(**rl)
    prm = ImplicitPRMReward(ImplicitPRMConfig(optimizer=OptimizerConfig(lr=1e-2, total_steps=100)))
    ext = RLExtensions(dense=prm, advantage=PrimeAdvantage(), group_filter=counting_filter())
    trainer = RLTrainer(model_config=base.config, rl=base.rl, optimizer=base.optimizer_config,
                        tokenizer=base.tokenizer, prompts_fn=base.prompts_fn,
                        reward_fn=base.reward_fn, extensions=ext)
    return trainer, params


def main(out: str):
    out = Path(out)
    trainer, params = extended_trainer(steps=6)
    ck = Checkpointer(out / "ck", every=2)

    def on_step(step, metrics):
        print(f"step {step} done; latest checkpoint {ck.latest_step()}", flush=True)

    state = trainer.run(trainer.init_state(params), checkpointer=ck, on_step=on_step)
    tree = {"policy": state.params, "prm": trainer.extension_state["dense"].params,
            "seen": trainer.extension_state["filter"]["seen"]}
    flat = {jax.tree_util.keystr(k): np.asarray(v)
            for k, v in jax.tree_util.tree_flatten_with_path(tree)[0]}
    np.savez(out / "final.npz", **flat)
    print("finished", flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
