"""A train state saved on one mesh resumes on another; a mismatched state is refused."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import NamedSharding, PartitionSpec

from rewardjax import models, sharding
from rewardjax.train.checkpoint import CheckpointMismatchError, Checkpointer
from rewardjax.train.state import OptimizerConfig, init_state, make_train_step
from tests.train.test_rl import CompileCounter

SAVE_AT, TOTAL = 3, 6
RULES = sharding.logical_rules(fsdp=True, tensor_parallel=True)


def _config(**kw):
    base = dict(model_type="llama", vocab_size=64, hidden_size=32, intermediate_size=48,
                num_layers=2, num_heads=4, num_kv_heads=2, head_dim=8, pad_token_id=0)
    return models.ModelConfig(**{**base, **kw})


OPT = OptimizerConfig(lr=2e-2, warmup_steps=2, total_steps=TOTAL, weight_decay=0.01)
TX = OPT.make()


def _loss(params, batch, *, config):
    logits, _ = models.apply(params, batch["tokens"][:, :-1], config=config)
    logp = jax.nn.log_softmax(logits.astype(jnp.float32))
    nll = -jnp.take_along_axis(logp, batch["tokens"][:, 1:, None], axis=-1)
    return nll.mean(), {}


def _batch(step):
    tokens = np.random.RandomState(step).randint(1, 64, size=(1, 8, 7)).astype(np.int32)
    return {"tokens": tokens}


def _params(config, seed):
    # numpy draws: init_params would compile one random program per shape per test run
    shapes = jax.eval_shape(functools.partial(models.init_params, config), jax.random.key(0))
    rng = np.random.RandomState(seed)
    return jax.tree.map(lambda s: jnp.asarray(0.1 * rng.standard_normal(s.shape), s.dtype), shapes)


def _placed_state(config, mesh, seed=0):
    """A fresh state on `mesh`: params by the rules, Adam's moments like their params,
    counters replicated; mesh=None leaves it on the default device."""
    params = _params(config, seed)
    if mesh is None:
        return init_state(params, TX)
    params = sharding.place(params, models.param_axes(config), mesh, RULES)
    state = init_state(params, TX)
    replicated = NamedSharding(mesh, PartitionSpec())
    param_shardings = jax.tree.map(lambda x: x.sharding, params)
    opt_shardings = optax.tree_map_params(
        TX, lambda _, s: s, state.opt_state, param_shardings,
        transform_non_params=lambda _: replicated,
        is_leaf=lambda x: isinstance(x, NamedSharding))
    return jax.device_put(state, type(state)(replicated, param_shardings, opt_shardings))


# one jitted step for every test: each mesh compiles it once, not once per run
STEP = make_train_step(functools.partial(_loss, config=_config()), TX, config=OPT)


def _run(state, mesh, steps):
    batch_sharding = None if mesh is None else NamedSharding(
        mesh, PartitionSpec(None, ("data", "fsdp")))
    for step in range(int(state.step), steps):
        batch = jax.device_put(_batch(step), batch_sharding)
        if mesh is None:
            state, _ = STEP(state, batch)
        else:
            with sharding.use_mesh(mesh, RULES):
                state, _ = STEP(state, batch)
    return state


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """Runs on (2, 2, 2) over 8 devices, checkpointing at SAVE_AT, to TOTAL steps."""
    config = _config()
    mesh = sharding.make_mesh(data=2, fsdp=2, tensor=2)
    directory = tmp_path_factory.mktemp("ck")
    ck = Checkpointer(directory, every=SAVE_AT)
    state = _run(_placed_state(config, mesh), mesh, SAVE_AT)
    ck.maybe_save(SAVE_AT, state, {"rl_step": SAVE_AT})
    ck.close()
    straight = _run(state, mesh, TOTAL)
    return directory, jax.tree.map(np.asarray, straight.params)


@pytest.mark.parametrize("shape,count", [((1, 4, 1), 4), ((1, 1, 1), 1)],
                         ids=["fsdp4_on_4_devices", "one_device"])
def test_resume_on_another_mesh_matches_uninterrupted_run(saved, shape, count):
    directory, expected = saved
    config = _config()
    mesh = sharding.make_mesh(data=shape[0], fsdp=shape[1], tensor=shape[2],
                              devices=jax.devices()[:count])
    # a different seed: every restored value must come from the checkpoint
    template = _placed_state(config, mesh, seed=1)
    ck = Checkpointer(directory)
    state, meta = ck.restore(template)
    ck.close()
    assert meta == {"rl_step": SAVE_AT} and int(state.step) == SAVE_AT
    # each array lands in the template's sharding, on the new mesh's devices only
    for got, want in zip(jax.tree.leaves(state), jax.tree.leaves(template)):
        assert got.sharding.is_equivalent_to(want.sharding, got.ndim)
        assert {s.data.shape for s in got.addressable_shards} == \
            {s.data.shape for s in want.addressable_shards}
    if shape == (1, 4, 1):
        wq = state.params["layers"]["wq"]  # [L, D, N, H], embed split over fsdp
        assert {s.data.shape for s in wq.addressable_shards} == {(2, 8, 4, 8)}
    resumed = _run(state, mesh, TOTAL)
    assert int(resumed.step) == TOTAL
    jax.tree.map(lambda a, b: np.testing.assert_allclose(np.asarray(a), b, atol=1e-6, rtol=0),
                 resumed.params, expected)


@pytest.mark.parametrize("changed,match", [
    (dict(intermediate_size=64),
     r"'params/layers/w_down' was saved with shape \(2, 48, 32\) float32 but .* expects "
     r"shape \(2, 64, 32\) float32"),
    (dict(tie_word_embeddings=True),
     r"array 'params/lm_head' \(shape \(32, 64\) float32\) is in the checkpoint but not in "
     r"the state to restore into and 2 more"),
], ids=["wider_mlp", "tied_embeddings"])
def test_restore_into_a_different_model_names_the_first_mismatched_array(saved, changed, match):
    directory, _ = saved
    template = _placed_state(_config(**changed), None)
    ck = Checkpointer(directory)
    counter = CompileCounter()
    with pytest.raises(CheckpointMismatchError, match=match):
        ck.restore(template)
    ck.close()
    assert counter.count == 0


def test_restore_names_a_missing_array_and_a_dtype_change(tmp_path):
    tied = _placed_state(_config(tie_word_embeddings=True), None)
    ck = Checkpointer(tmp_path)
    ck.maybe_save(1, tied, force=True)
    # an unplaced state (today's single-device trainers) restores as before
    restored, _ = ck.restore(_placed_state(_config(tie_word_embeddings=True), None, seed=1))
    jax.tree.map(np.testing.assert_array_equal, restored, tied)
    untied = _placed_state(_config(), None)
    with pytest.raises(CheckpointMismatchError,
                       match=r"array 'params/lm_head' \(shape \(32, 64\) float32\) is in the "
                             r"state to restore into but not in the checkpoint and 2 more "
                             r"\(opt_state/1/0/mu/lm_head, opt_state/1/0/nu/lm_head\)"):
        ck.restore(untied)
    bf16 = tied._replace(params=jax.tree.map(lambda x: x.astype(jnp.bfloat16), tied.params))
    with pytest.raises(CheckpointMismatchError,
                       match=r"'params/embed' was saved with shape \(64, 32\) float32 but .* "
                             r"expects shape \(64, 32\) bfloat16"):
        ck.restore(bf16)
    ck.close()
