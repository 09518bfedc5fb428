"""PRLCoder line labels (arXiv:2502.01715) on a program whose labels are stated by hand.

absolute(x): `if x < 0: return -x` then `return x`, tested on -3, -1, 0 and 2.
  line 1 `if x < 0:`   -> `x <= 0` passes (-0 == 0), `x < 1` passes (only 0 is new, and
                          -0 == 0), `x < -1` fails on -1: labels 1,1,1,1 / 1,1,1,1 / 1,0,0,0
  line 2 `return -x`   -> `+x` and `pass` both fail on -3:            1,1,0,0 twice
  line 3 `return x`    -> `pass` returns None:                        1,1,1,0
  line 0 `def ...:`    -> nothing to swap, and a header is never deleted.
"""

import functools

import jax
import numpy as np
import pytest

from rewardjax.data import pipeline as pl
from rewardjax.data.records import StepSolution
from rewardjax.data.tokenizer import default_tokenizer
from rewardjax.envs import code_labels as cl
from rewardjax.models import ModelConfig, init_params
from rewardjax.train import OptimizerConfig, init_state, make_train_step, prm, split_micro
from rewardjax.train import reward_model as rm

ABSOLUTE = cl.code_problems()[0]


def test_absolute_is_the_first_shipped_problem():
    assert ABSOLUTE.name == "absolute"
    assert ABSOLUTE.lines == ("def absolute(x):", "    if x < 0:", "        return -x",
                              "    return x")


def test_line_mutants_by_hand():
    got = [[(m.text, m.kind) for m in cl.line_mutants(ABSOLUTE.solution, line=i)]
           for i in range(4)]
    assert got == [
        [],
        [("    if x <= 0:", "operator"), ("    if x < 1:", "constant"),
         ("    if x < -1:", "constant")],
        [("        return +x", "operator"), ("        pass", "delete")],
        [("    pass", "delete")],
    ]
    src = "def f(n):\n    t = 0\n    for i in range(n):\n        t += i\n    return t"
    assert ("        t = t + (i)", "refactor") in [
        (m.text, m.kind) for m in cl.line_mutants(src, line=3)]
    assert ("    for i in range(0, n):", "refactor") in [
        (m.text, m.kind) for m in cl.line_mutants(src, line=2)]


def test_labels_of_absolute_by_hand():
    records = cl.prm_records([ABSOLUTE])
    got = [(r.steps[1:], r.labels, r.subset) for r in records]
    assert got == [
        (("    if x < 0:", "        return -x", "    return x"), (1.0,) * 4, "pass:reference"),
        (("    if x <= 0:", "        return -x", "    return x"), (1.0,) * 4, "pass:operator"),
        (("    if x < 1:", "        return -x", "    return x"), (1.0,) * 4, "pass:constant"),
        (("    if x < -1:", "        return -x", "    return x"), (1.0, 0.0, 0.0, 0.0),
         "wrong_answer:constant"),
        (("    if x < 0:", "        return +x", "    return x"), (1.0, 1.0, 0.0, 0.0),
         "wrong_answer:operator"),
        (("    if x < 0:", "        pass", "    return x"), (1.0, 1.0, 0.0, 0.0),
         "wrong_answer:delete"),
        (("    if x < 0:", "        return -x", "    pass"), (1.0, 1.0, 1.0, 0.0),
         "wrong_answer:delete"),
    ]
    assert all(isinstance(r, StepSolution) and r.prompt == ABSOLUTE.prompt for r in records)
    # Cut at the rewritten line, as PRM800K labels: the first error is the last step.
    assert records[4].up_to_first_error().labels == (1.0, 1.0, 0.0)


def test_each_execution_outcome_is_named():
    mutants = [cl.Mutant(line=1, text="    if x <:", kind="hand"),
               cl.Mutant(line=2, text="        return -y", kind="hand"),
               cl.Mutant(line=3, text="    while True: pass", kind="hand"),
               cl.Mutant(line=3, text="    return x + 0", kind="hand")]
    out = cl.label_mutants(ABSOLUTE, mutants)
    assert [o for _, o in out] == ["compile_error", "runtime_error", "timeout", "pass"]
    assert [r.labels for r, _ in out] == [(1.0, 0.0, 0.0, 0.0), (1.0, 1.0, 0.0, 0.0),
                                          (1.0, 1.0, 1.0, 0.0), (1.0,) * 4]


def test_line_labels_rule_and_bad_input():
    assert cl.line_labels(4, 1, False) == (1.0, 0.0, 0.0, 0.0)
    assert cl.line_labels(3, 2, True) == (1.0, 1.0, 1.0)
    with pytest.raises(cl.CodeLabelError, match=r"line = 4: expected a line index in \[0, 4\)"):
        cl.line_labels(4, 4, True)
    with pytest.raises(cl.CodeLabelError, match="line = 9"):
        cl.line_mutants(ABSOLUTE.solution, line=9)
    with pytest.raises(cl.CodeLabelError, match="solution line 1 is blank"):
        cl.CodeProblem(name="p", prompt="q", solution="def f():\n\n    return 1",
                       tests=("assert f() == 1",))
    with pytest.raises(cl.CodeLabelError, match=r"tests\[0\] = 'f\(\) == 1'"):
        cl.CodeProblem(name="p", prompt="q", solution="def f():\n    return 1", tests=("f() == 1",))
    with pytest.raises(cl.CodeLabelError, match="max_mutants_per_line = 0"):
        cl.LabelConfig(max_mutants_per_line=0)
    broken = cl.CodeProblem(name="broken", prompt="q", solution="def f():\n    return 2",
                            tests=("assert f() == 1",))
    with pytest.raises(cl.CodeLabelError, match="'broken': the reference solution fails its "
                                                "tests \\(wrong_answer"):
        cl.label_problem(broken)
    with pytest.raises(cl.CodeLabelError, match=r"mutants\[0\].line = 7"):
        cl.label_mutants(ABSOLUTE, [cl.Mutant(line=7, text="x", kind="hand")])


def test_shipped_records_train_the_prm():
    """Every shipped reference passes; the records go through `step_pipeline` and
    `prm.step_loss`, and a few steps lower the step BCE."""
    config = cl.LabelConfig(max_mutants_per_line=1)
    records = cl.prm_records(config=config)
    assert len(cl.code_problems()) == 12
    assert sum(r.subset == "pass:reference" for r in records) == 12
    assert {r.subset.split(":")[0] for r in records} >= {"pass", "wrong_answer"}
    labels = np.concatenate([r.labels for r in records])
    assert 0.3 < labels.mean() < 0.95

    tok = default_tokenizer()
    model = ModelConfig(model_type="qwen2", vocab_size=len(tok), hidden_size=32,
                        intermediate_size=64, num_layers=1, num_heads=2, num_kv_heads=1,
                        head_dim=16, qkv_bias=True, tie_word_embeddings=True)
    pipe = pl.step_pipeline(records, tok, pl.PipelineConfig(
        batch_size=16, buckets=(160,), max_steps=10, shuffle=False, drop_remainder=True))
    batch = pipe.dataset[0]
    params = rm.init_reward_model(init_params(model, jax.random.key(0)), jax.random.key(1),
                                  config=model, head="step")
    loss_fn = functools.partial(prm.step_loss, config=model)
    tx = OptimizerConfig(lr=3e-3, warmup_steps=0, total_steps=20).make()
    step = make_train_step(loss_fn, tx, donate=False)
    state = init_state(params, tx)
    first = float(jax.jit(loss_fn)(params, batch)[0])
    for _ in range(15):
        state, _ = step(state, split_micro(batch, 1))
    assert float(jax.jit(loss_fn)(state.params, batch)[0]) < 0.8 * first
