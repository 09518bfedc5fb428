"""What the experiment files share: where a backbone, a task and a warm start come from.

    backbone.py    BackboneConfig (a local HF directory or a small random model, its
                   dtypes, LoRA) -> Backbone (model config, params placed on the mesh,
                   tokenizer, placement)
    tasks.py       the tiny presets' synthetic arithmetic tasks
    warm_start.py  SFTConfig and the one supervised warm start
    rl_arith.py    RLRecipe: warm start + RL on arithmetic + held-out pass@1 (the policy-
                   optimization experiments choose presets of it)

The generic machinery they call (train steps, the loop, placement, checkpoints) lives
in `rewardjax.train`; experiment files in `experiments/` are configuration plus `run`.
"""

from rewardjax.recipes.backbone import Backbone, BackboneConfig, load_backbone
from rewardjax.recipes.tasks import TINY_BT_TASK, TINY_RL_TASK, TINY_RM_TASK, TINY_TASK
from rewardjax.recipes.warm_start import (SFTConfig, TokenWeights, sft_warm_start,
                                          span_token_weights, sync_schedule)
