"""Train state, jitted steps, the training loop, placement on a mesh, checkpoints, metrics."""

from rewardjax.train.checkpoint import Checkpointer
from rewardjax.train.loop import fit, make_batch_fn, run_stage
from rewardjax.train.metrics import LogConfig, MetricsLogger, plot_curves, read_jsonl, write_result
from rewardjax.train.placement import Placement
from rewardjax.train.state import (
    NonFiniteError,
    OptimizerConfig,
    TrainState,
    init_state,
    make_train_step,
    split_micro,
)
