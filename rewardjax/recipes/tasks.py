"""The tiny presets' synthetic arithmetic tasks (`rewardjax.data.synthetic.arithmetic`)."""

import dataclasses

from rewardjax.data.synthetic.arithmetic import ArithmeticConfig

# Single-digit values, + and − with operands 1..3, 2-4 operations. A 2-layer model
# learns to check such a step within a few hundred CPU steps; the default task (values
# up to 99, ×, operands up to 9) needs far longer.
TINY_TASK = ArithmeticConfig(min_steps=2, max_steps=4, max_start=9, max_value=9, max_operand=3,
                             ops=("+", "-"), max_error=2)

# The reward-model experiments' tiny task: TINY_TASK with operands 1..2. A 2-layer width-64
# PRM trained on every step's label learns to check a step ("a op b = c") only after a
# plateau of ~500 optimizer steps (first-error F1 0.52 after 800); trained on solutions
# cut after their first wrong step (`StepSolution.up_to_first_error`) it reaches F1 0.9
# after 300 steps and 1.0 after 600.
TINY_RM_TASK = dataclasses.replace(TINY_TASK, max_operand=2)

# The Bradley–Terry experiment's tiny task: TINY_RM_TASK with 3-5 operations. With 2-4,
# the train split holds only ~100 distinct 2-step questions (seen ~13 times each in 4k
# pairs) and 45% of 512 held-out pairs come from a dozen 2-step test questions; a pairwise
# RM memorises the training questions' answers, and since neighbouring questions'
# answers differ by 1-2 (the size of a corruption) it scores those test pairs below
# chance. 3-5 operations give ~3,400 train and ~250 held-out questions in even shares.
# Wrong steps are off by one only: with errors of 1 and 2 the width-64 model learns one
# detector per error size, and whether the off-by-one detector forms within the budget
# depended on the seed and the thread count (held-out 0.77-0.99); off by one alone it
# forms on every seed (docs/experiments/bradley_terry_rm.md).
TINY_BT_TASK = dataclasses.replace(TINY_RM_TASK, min_steps=3, max_steps=5, max_error=1)

# The RL experiments' tiny task: two or three additions/subtractions of single digits
# with values up to 19: the worked solution is within reach of a ~1M-parameter model
# after a few hundred SFT steps, the bare answer much less often.
TINY_RL_TASK = ArithmeticConfig(min_steps=2, max_steps=3, ops=("+", "-"), max_start=9,
                                max_operand=5, max_value=19)
