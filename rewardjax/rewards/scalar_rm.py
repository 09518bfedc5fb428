"""A trained scalar-head reward model as a batched `score_fn` for `RewardModelReward`.

    reward = RewardModelReward(ScalarRMScorer(rm_params, config=..., tokenizer=...,
                                              length=128, batch_size=64),
                               batch_size=64)

Each (prompt, completion) is encoded exactly as the preference pipeline encodes a
training response (`data.encoding.encode_responses`: the prompt through the chat
template, the completion plus the template's end of turn), left-padded to one fixed
`length` and scored `batch_size` rows at a time by one jitted call of
`train.reward_model.sequence_rewards` (the head read at the last real token), so an RL
run scores every rollout with one compiled function. With a `placement` the rows are
split over the mesh's (data, fsdp) axes and the params are expected placed by it.
"""

from __future__ import annotations

from typing import Any, Sequence

import jax
import numpy as np

from rewardjax import sharding
from rewardjax.data.batches import pad_left
from rewardjax.data.encoding import encode_responses
from rewardjax.models import ModelConfig
from rewardjax.train import placement as placement_lib
from rewardjax.train.reward_model import sequence_rewards


class ScalarRMScorer:
    """`(prompts, completions) -> [n]` rewards of a scalar-head (Bradley–Terry) RM.

    Args:
      params: `{"backbone", "head"}` of `train.reward_model.init_reward_model(head="scalar")`.
      config: the backbone's model config.
      tokenizer: the tokenizer (and chat template) the RM was trained with.
      length: keyword-only padded sequence length; a longer prompt + completion raises.
      batch_size: keyword-only rows per jitted call (the last chunk is padded with
        repeats); a multiple of data x fsdp when placed.
      placement: the mesh the params live on (None: the default device).
      apply_kwargs: the backbone's remat / scan_layers.
    """

    def __init__(self, params, *, config: ModelConfig, tokenizer, length: int, batch_size: int,
                 placement: placement_lib.Placement | None = None, **apply_kwargs: Any):
        if length <= 0 or batch_size <= 0:
            raise ValueError(f"ScalarRMScorer: length = {length} and batch_size = {batch_size}; "
                             f"expected positive ints")
        if placement is not None and batch_size % placement.rows:
            raise ValueError(f"ScalarRMScorer: batch_size = {batch_size} must be divisible by "
                             f"data x fsdp = {placement.rows} of the mesh")
        self.params, self.tokenizer, self.placement = params, tokenizer, placement
        self.length, self.batch_size = length, batch_size
        self.pad_id = tokenizer.pad_token_id
        self._score = jax.jit(lambda p, tok, m: sequence_rewards(
            p, {"tokens": tok, "attention_mask": m}, config=config, **apply_kwargs))

    def encode(self, prompts: Sequence[Any], completions: Sequence[str]
               ) -> tuple[np.ndarray, np.ndarray]:
        """[n, length] left-padded tokens and mask."""
        seqs = []
        for i, (prompt, completion) in enumerate(zip(prompts, completions)):
            p_ids, (r_ids,) = encode_responses(self.tokenizer, prompt, [completion])
            if len(p_ids) + len(r_ids) > self.length:
                raise ValueError(f"ScalarRMScorer: row {i} has {len(p_ids)} prompt + "
                                 f"{len(r_ids)} response tokens; length is {self.length}")
            seqs.append(np.concatenate([p_ids, r_ids]))
        padded = pad_left(seqs, [0] * len(seqs), self.length, self.pad_id)
        return padded["tokens"], padded["attention_mask"]

    def __call__(self, prompts: Sequence[Any], completions: Sequence[str]) -> np.ndarray:
        if len(prompts) != len(completions):
            raise ValueError(f"ScalarRMScorer: {len(prompts)} prompts for {len(completions)} "
                             f"completions; expected one per completion")
        n, B = len(completions), self.batch_size
        tokens, mask = self.encode(prompts, completions)
        out = []
        for start in range(0, n, B):
            tok, m = tokens[start:start + B], mask[start:start + B]
            k = len(tok)
            pad = np.arange(B) % k  # repeats of the chunk keep the compiled shape
            batch = {"tokens": tok[pad], "mask": m[pad]}
            if self.placement is not None:
                batch = self.placement.batch(batch, micro=False)
            with placement_lib.context(self.placement):
                r = self._score(self.params, batch["tokens"], batch["mask"])
            out.append(np.asarray(sharding.host_local_array(r), np.float32)[:k])
        return np.concatenate(out) if out else np.zeros((0,), np.float32)

