"""The projections' 2-D-matmul gradient (`transformer._matmul`) equals einsum's own."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.ad_checkpoint import print_saved_residuals

from rewardjax import models, sharding
from rewardjax.models import transformer

B, T, D, F, N, K, H, V = 2, 5, 12, 20, 3, 1, 4, 16
# Every spec the model uses, with its operand shapes and preferred_element_type.
SPECS = [
    ("btd,dnh->btnh", (B, T, D), (D, N, H), None),
    ("btd,dkh->btkh", (B, T, D), (D, K, H), None),
    ("btnh,nhd->btd", (B, T, N, H), (N, H, D), None),
    ("btd,df->btf", (B, T, D), (D, F), None),
    ("btf,fd->btd", (B, T, F), (F, D), None),
    ("btd,vd->btv", (B, T, D), (V, D), jnp.float32),
    ("btd,dv->btv", (B, T, D), (D, V), jnp.float32),
]

CONFIG = models.ModelConfig(model_type="qwen2", vocab_size=64, hidden_size=32,
                            intermediate_size=48, num_layers=3, num_heads=4, num_kv_heads=2,
                            head_dim=8, qkv_bias=True, tie_word_embeddings=True)


def _einsum(spec, x, w, preferred_element_type=None):
    return jnp.einsum(spec, x, w, preferred_element_type=preferred_element_type)


def _operands(x_shape, w_shape, dtype=jnp.float32):
    kx, kw = jax.random.split(jax.random.key(0))
    return (jax.random.normal(kx, x_shape).astype(dtype),
            jax.random.normal(kw, w_shape).astype(dtype))


@pytest.mark.parametrize("spec,x_shape,w_shape,pet", SPECS, ids=[s[0] for s in SPECS])
def test_op_value_and_vjp_match_einsum(spec, x_shape, w_shape, pet):
    x, w = _operands(x_shape, w_shape)
    y, vjp = jax.vjp(lambda x, w: transformer._matmul(spec, x, w, pet), x, w)
    y_ref, vjp_ref = jax.vjp(lambda x, w: _einsum(spec, x, w, pet), x, w)
    np.testing.assert_array_equal(y, y_ref)  # the forward is the einsum itself
    g = jax.random.normal(jax.random.key(1), y.shape)
    for got, want in zip(vjp(g), vjp_ref(g)):
        assert got.shape == want.shape and got.dtype == want.dtype
        np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("spec,x_shape,w_shape,pet", SPECS, ids=[s[0] for s in SPECS])
def test_op_bfloat16_dtypes_match_einsum(spec, x_shape, w_shape, pet):
    x, w = _operands(x_shape, w_shape, jnp.bfloat16)
    y, vjp = jax.vjp(lambda x, w: transformer._matmul(spec, x, w, pet), x, w)
    y_ref, vjp_ref = jax.vjp(lambda x, w: _einsum(spec, x, w, pet), x, w)
    assert y.dtype == y_ref.dtype == (pet or jnp.bfloat16)
    g = jnp.ones(y.shape, y.dtype)
    for got, want in zip(vjp(g), vjp_ref(g)):
        assert got.dtype == want.dtype == jnp.bfloat16
        np.testing.assert_allclose(got.astype(np.float32), want.astype(np.float32), rtol=1e-2)


def test_spec_outside_the_supported_form_is_rejected():
    x, w = _operands((B, T, D), (T, F))
    with pytest.raises(ValueError, match="_matmul needs"):
        transformer._matmul("btd,tf->bdf", x, w)


def _loss(params, tokens, mask, config=CONFIG, **kw):
    logits, _ = models.apply(params, tokens, config=config, mask_bt=mask, **kw)
    logp = jax.nn.log_softmax(logits[:, :-1])
    nll = -jnp.take_along_axis(logp, tokens[:, 1:, None], -1)[..., 0]
    return jnp.sum(nll * mask[:, 1:]) / jnp.sum(mask[:, 1:])


def _batch():
    tokens = jax.random.randint(jax.random.key(1), (4, 10), 1, CONFIG.vocab_size)
    mask = jnp.ones((4, 10), jnp.int32).at[1, :3].set(0).at[2, :6].set(0)
    return tokens, mask


@pytest.mark.parametrize("tie,remat,scan", [(True, "none", False), (False, "none", False),
                                            (True, "full", False), (True, "dots", False),
                                            (True, "none", True), (False, "dots", True)])
def test_model_gradients_match_plain_einsum(monkeypatch, tie, remat, scan):
    config = dataclasses.replace(CONFIG, tie_word_embeddings=tie)
    params = models.init_params(config, jax.random.key(0), std=0.2)
    tokens, mask = _batch()
    loss = functools.partial(_loss, config=config, remat=remat, scan_layers=scan)
    got = jax.jit(jax.value_and_grad(loss))(params, tokens, mask)
    monkeypatch.setattr(transformer, "_matmul", _einsum)
    want = jax.jit(jax.value_and_grad(loss))(params, tokens, mask)
    np.testing.assert_allclose(got[0], want[0], atol=1e-6)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5, rtol=0), got[1], want[1])


def test_remat_dots_still_saves_the_projection_outputs(monkeypatch, capsys):
    """The `dots` policy must still see the projections as dots (and save their outputs)."""
    params = models.init_params(CONFIG, jax.random.key(0))
    tokens, mask = _batch()
    loss = functools.partial(_loss, remat="dots")

    def saved_dots():
        print_saved_residuals(loss, params, tokens, mask)
        return sorted(line.split(" ")[0] for line in capsys.readouterr().out.splitlines()
                      if "output of dot_general" in line)

    got = saved_dots()
    monkeypatch.setattr(transformer, "_matmul", _einsum)
    assert got == saved_dots()
    assert len(got) >= 6 * CONFIG.num_layers  # q, k, v, o, gate, up (+ attention)


@pytest.mark.skipif(jax.device_count() < 8, reason="needs 8 (simulated) devices")
def test_sharded_gradients_equal_single_device():
    config = dataclasses.replace(CONFIG, tie_word_embeddings=False)
    params = models.init_params(config, jax.random.key(0), std=0.2)
    tokens, mask = _batch()
    tokens, mask = jnp.tile(tokens, (2, 1)), jnp.tile(mask, (2, 1))  # 8 rows
    loss = functools.partial(_loss, config=config, scan_layers=True, remat="dots")
    want = jax.jit(jax.grad(loss))(params, tokens, mask)
    mesh = sharding.make_mesh(data=2, fsdp=2, tensor=2)
    rules = sharding.logical_rules(fsdp=True, tensor_parallel=True)
    placed = sharding.place(params, models.param_axes(config), mesh, rules)
    batch = sharding.named_sharding(("batch", "length"), tokens.shape, mesh, rules)
    with sharding.use_mesh(mesh, rules):
        got = jax.jit(jax.grad(loss))(placed, jax.device_put(tokens, batch),
                                      jax.device_put(mask, batch))
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5, rtol=0), got, want)
