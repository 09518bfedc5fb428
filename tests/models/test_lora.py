"""LoRA adapters: merge, gradients only for adapters, merged and PEFT exports, bad input."""

import functools
import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from safetensors.numpy import load_file, save_file

from rewardjax import models, sharding
from rewardjax.models import hf, lora
from tests.models.conftest import hf_logits, left_padded_batch, torch, transformers

peft = pytest.importorskip("peft")

VOCAB = 61


def _config(model_type="llama", **kw):
    base = dict(model_type=model_type, vocab_size=VOCAB, hidden_size=32, intermediate_size=48,
                num_layers=2, num_heads=4, num_kv_heads=2, head_dim=8, pad_token_id=0,
                qkv_bias=model_type == "qwen2", qk_norm=model_type == "qwen3")
    if model_type == "qwen3":
        base["head_dim"] = 12  # N·H = 48 != D: q's output and o's input differ from D
    base.update(kw)
    return models.ModelConfig(**base)


# Jitted: op-by-op dispatch of the many small init ops costs seconds on 8 CPU devices.
_init_params = jax.jit(models.init_params, static_argnums=0, static_argnames="std")
_init_lora = jax.jit(lora.init_lora, static_argnums=(1, 2))


def _base(config, seed=0):
    return _init_params(config, jax.random.key(seed), std=0.1)


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _trained_adapters(config, cfg, seed):
    adapters = lora.init_lora(jax.random.key(seed + 1), config, cfg)
    keys = iter(jax.random.split(jax.random.key(seed + 2), len(adapters)))
    return {t: {"a": ab["a"], "b": 0.2 * jax.random.normal(next(keys), ab["b"].shape)}
            for t, ab in adapters.items()}


def _trained(config, cfg, seed=0):
    """Base params and adapters with a nonzero B, as after some training."""
    return _base(config, seed), _trained_adapters(config, cfg, seed)


_apply = jax.jit(models.apply, static_argnames="config")
_merge = jax.jit(lora.merge, static_argnums=2)
ALL = lora.LoraConfig(rank=4, alpha=8.0)  # shared by most tests, so their programs compile once


def _hf_causal_lm(path):
    return transformers.AutoModelForCausalLM.from_pretrained(path, local_files_only=True).eval()


def _logits(params, config, tokens, mask):
    out, _ = _apply(params, jnp.asarray(tokens), config=config, mask_bt=jnp.asarray(mask))
    return np.asarray(out)


def test_fresh_adapters_are_the_identity_with_peft_init():
    config, cfg = _config(), ALL
    base = _base(config)
    adapters = _init_lora(jax.random.key(1), config, cfg)
    assert adapters["q"]["a"].shape == (2, 32, 4) and adapters["q"]["b"].shape == (2, 4, 32)
    assert adapters["k"]["b"].shape == (2, 4, 16)  # K·H
    assert adapters["o"]["a"].shape == (2, 32, 4)  # N·H in
    assert adapters["down"]["a"].shape == (2, 48, 4) and adapters["down"]["b"].shape == (2, 4, 32)
    a = np.asarray(adapters["down"]["a"])
    # PEFT's kaiming_uniform_(a=sqrt(5)): U(-1/sqrt(d_in), 1/sqrt(d_in)), here d_in = 48
    assert 0.9 / np.sqrt(48) < np.abs(a).max() <= 1 / np.sqrt(48)
    assert not np.allclose(a[0], a[1])  # layers drawn independently
    merged = _merge(base, adapters, cfg)
    jax.tree.map(np.testing.assert_array_equal, merged, base)


def test_merge_is_w_plus_scaled_low_rank_product():
    config, cfg = _config("qwen3"), lora.LoraConfig(rank=4, alpha=8.0, targets=("q", "o"))
    base, adapters = _trained(config, cfg)
    merged = _merge(base, adapters, cfg)
    a, b = np.asarray(adapters["o"]["a"][1]), np.asarray(adapters["o"]["b"][1])
    want = np.asarray(base["layers"]["wo"][1]) + 2.0 * (a @ b).reshape(4, 12, 32)  # α/r = 2
    np.testing.assert_allclose(np.asarray(merged["layers"]["wo"][1]), want, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(merged["layers"]["wk"]),
                                  np.asarray(base["layers"]["wk"]))


@pytest.mark.parametrize("model_type", ["llama", "qwen3"])
def test_merged_export_matches_transformers(tmp_path, model_type):
    config, cfg = _config(model_type), ALL
    base, adapters = _trained(config, cfg)
    merged = _merge(base, adapters, cfg)
    hf.save(tmp_path, config, merged)
    hf_model = _hf_causal_lm(tmp_path)
    tokens, mask, positions = left_padded_batch(vocab=VOCAB)
    ours = _logits(merged, config, tokens, mask)
    # the adapters matter
    assert np.abs(ours - _logits(base, config, tokens, mask))[mask == 1].max() > 0.1
    assert np.abs(ours - hf_logits(hf_model, tokens, mask, positions))[mask == 1].max() < 1e-5


@pytest.mark.parametrize("model_type,targets", [("qwen2", ALL.targets), ("qwen3", ("q", "o"))])
def test_peft_directory_loads_onto_base_model(tmp_path, model_type, targets):
    config = _config(model_type)
    cfg = lora.LoraConfig(rank=4, alpha=8.0, targets=targets)
    base, adapters = _trained(config, cfg)
    hf.save(tmp_path / "base", config, base)
    lora.save_peft(tmp_path / "adapter", config, adapters, cfg,
                   base_model_name_or_path=str(tmp_path / "base"))
    hf_base = _hf_causal_lm(tmp_path / "base")
    model = peft.PeftModel.from_pretrained(hf_base, tmp_path / "adapter").eval()
    loaded = model.peft_config["default"]
    assert (loaded.r, loaded.lora_alpha) == (4, 8.0)
    assert set(loaded.target_modules) == {
        lora.PROJECTIONS[t].hf_module.split(".")[-1] for t in targets}
    tokens, mask, positions = left_padded_batch(vocab=VOCAB)
    ref = hf_logits(model, tokens, mask, positions)
    ours = _logits(_merge(base, adapters, cfg), config, tokens, mask)
    assert np.abs(ours - _logits(base, config, tokens, mask))[mask == 1].max() > 0.1
    assert np.abs(ours - ref)[mask == 1].max() < 1e-4
    # and our reader gives back the same adapters
    cfg2, adapters2 = lora.load_peft(tmp_path / "adapter", config)
    assert cfg2 == cfg
    jax.tree.map(np.testing.assert_array_equal, adapters2, adapters)


def test_load_peft_reads_adapters_peft_wrote(tmp_path):
    config = _config("llama")
    base = _base(config)
    hf.save(tmp_path / "base", config, base)
    torch.manual_seed(0)
    hf_base = _hf_causal_lm(tmp_path / "base")
    # init_lora_weights=False draws B at random too, so every adapter changes the model.
    peft_cfg = peft.LoraConfig(r=2, lora_alpha=5, target_modules=["o_proj", "k_proj", "gate_proj"],
                               init_lora_weights=False, task_type="CAUSAL_LM")
    model = peft.get_peft_model(hf_base, peft_cfg).eval()
    model.save_pretrained(tmp_path / "theirs")
    cfg, adapters = lora.load_peft(tmp_path / "theirs", config)
    assert cfg.rank == 2 and cfg.alpha == 5 and set(cfg.targets) == {"o", "k", "gate"}
    tokens, mask, positions = left_padded_batch(vocab=VOCAB)
    ours = _logits(_merge(base, adapters, cfg), config, tokens, mask)
    assert np.abs(ours - _logits(base, config, tokens, mask))[mask == 1].max() > 0.01
    assert np.abs(ours - hf_logits(model, tokens, mask, positions))[mask == 1].max() < 1e-4


def test_gradients_and_optimizer_state_cover_adapters_only():
    config, cfg = _config("qwen2"), ALL
    base = _base(config)
    tokens = jax.random.randint(jax.random.key(3), (2, 9), 1, VOCAB)

    def nll(params):
        logits, _ = models.apply(params, tokens[:, :-1], config=config)
        logp = jax.nn.log_softmax(logits)
        return -jnp.mean(jnp.take_along_axis(logp, tokens[:, 1:, None], axis=-1))

    def loss(adapters, base):
        return nll(lora.merge(base, adapters, cfg))

    # One compiled function, differentiating the adapters (argument 0) only.
    value_and_grad = jax.jit(jax.value_and_grad(loss))
    fresh = _init_lora(jax.random.key(1), config, cfg)
    _, g = value_and_grad(fresh, base)
    assert jax.tree.structure(g) == jax.tree.structure(fresh)
    for t in cfg.targets:  # B = 0: only B moves at the first step ("LoRA", sec. 4.1)
        assert not np.any(np.asarray(g[t]["a"])) and np.any(np.asarray(g[t]["b"]))

    _, adapters = _trained(config, cfg)
    l0, g = value_and_grad(adapters, base)
    for path, leaf in jax.tree.leaves_with_path(g):
        assert np.any(np.asarray(leaf)), jax.tree_util.keystr(path)

    opt = optax.adam(1e-2)
    opt_state = opt.init(adapters)
    n_adapter_leaves = len(jax.tree.leaves(adapters))
    adapter_bytes = sum(x.nbytes for x in jax.tree.leaves(adapters))
    base_bytes = sum(x.nbytes for x in jax.tree.leaves(base))
    state_leaves = jax.tree.leaves(opt_state)
    assert len(state_leaves) == 2 * n_adapter_leaves + 1  # mu, nu per adapter leaf; count
    assert sum(x.nbytes for x in state_leaves) == 2 * adapter_bytes + 4
    assert 2 * adapter_bytes < base_bytes / 2

    before = jax.tree.map(np.array, base)
    updates, opt_state = jax.jit(opt.update)(g, opt_state, adapters)
    new_adapters = jax.jit(optax.apply_updates)(adapters, updates)
    l1, _ = value_and_grad(new_adapters, base)
    assert float(l1) < float(l0)
    jax.tree.map(np.testing.assert_array_equal, before, jax.tree.map(np.asarray, base))
    # The reference policy is the base itself: adapters off, no second copy.
    l_off, _ = value_and_grad(jax.tree.map(jnp.zeros_like, new_adapters), base)
    assert float(l_off) == pytest.approx(float(jax.jit(nll)(base)), abs=1e-6)
    assert abs(float(l_off) - float(l1)) > 1e-3


def test_adapters_shard_by_the_rules_and_merge_on_a_mesh():
    config, cfg = _config("llama"), ALL
    base, adapters = _trained(config, cfg)
    axes = lora.lora_axes(config, cfg)
    assert axes["q"] == {"a": ("layers", "embed", None), "b": ("layers", None, "heads")}
    assert axes["o"] == {"a": ("layers", "heads", None), "b": ("layers", None, "embed")}
    assert axes["down"]["a"] == ("layers", "mlp", None)
    want = np.asarray(_merge(base, adapters, cfg)["layers"]["wq"])
    mesh = sharding.make_mesh(data=1, fsdp=4, tensor=2)
    rules = sharding.DEFAULT_RULES
    with sharding.use_mesh(mesh, rules):
        placed = sharding.place(adapters, axes, mesh, rules)
        base_placed = sharding.place(base, models.param_axes(config), mesh, rules)
        assert placed["q"]["a"].addressable_shards[0].data.shape == (2, 8, 4)  # D / fsdp
        assert placed["q"]["b"].addressable_shards[0].data.shape == (2, 4, 16)  # N·H / tensor
        assert placed["k"]["b"].addressable_shards[0].data.shape == (2, 4, 8)  # K·H / tensor
        merged = _merge(base_placed, placed, cfg)
    np.testing.assert_allclose(np.asarray(merged["layers"]["wq"]), want, atol=1e-6)


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("kwargs,match", [
    (dict(targets=("q", "qkv")), r"target 'qkv' matches no projection.*available projections: "
                                 r"q, k, v, o, gate, up, down"),
    (dict(targets=("q_proj",)), r"target 'q_proj' matches no projection.*'q_proj' is 'q'"),
    (dict(targets=()), "targets is empty"),
    (dict(targets=("v", "v")), "twice"),
    (dict(rank=0), "rank must be a positive int, got 0"),
    (dict(alpha=-1.0), "alpha must be a positive number, got -1.0"),
])
def test_bad_lora_settings_are_named(kwargs, match):
    with pytest.raises(models.ConfigError, match=match):
        lora.LoraConfig(**kwargs)


def test_rank_larger_than_a_projection_fails_before_compiling():
    config = _config("llama")  # k: 32 -> 16
    cfg = lora.LoraConfig(rank=20, alpha=8.0, targets=("q", "k"))
    with pytest.raises(models.ConfigError, match=r"rank 20 exceeds target 'k'.*d_out=16"):
        cfg.check(config)
    with pytest.raises(models.ConfigError, match="target 'k'"):
        lora.init_lora(jax.random.key(0), config, cfg)


def test_merge_names_mismatched_adapters():
    config = _config("llama")
    cfg = lora.LoraConfig(rank=2, alpha=4.0, targets=("q",))
    base = _base(config)
    adapters = _init_lora(jax.random.key(1), config, cfg)
    with pytest.raises(models.ConfigError,
                       match=r"adapters hold targets \['q'\].*names \['q', 'v'\]"):
        lora.merge(base, adapters, lora.LoraConfig(rank=2, alpha=4.0, targets=("q", "v")))
    wide = lora.LoraConfig(rank=3, alpha=4.0, targets=("q",))
    with pytest.raises(ValueError,
                       match=r"adapter q/a has shape \(2, 32, 2\).*expects \(2, 32, 3\)"):
        lora.merge(base, adapters, wide)


def test_load_peft_names_bad_files(tmp_path):
    config = _config("llama")
    cfg = lora.LoraConfig(rank=2, alpha=4.0, targets=("q", "up"))
    _, adapters = _trained(config, cfg)
    d = lora.save_peft(tmp_path / "a", config, adapters, cfg)
    weights = load_file(d / lora.PEFT_WEIGHTS)
    raw = json.loads((d / lora.PEFT_CONFIG).read_text())

    name = "base_model.model.model.layers.1.mlp.up_proj.lora_B.weight"
    save_file({k: v for k, v in weights.items() if k != name}, d / lora.PEFT_WEIGHTS)
    with pytest.raises(models.CheckpointError,
                       match=rf"tensor '{name}' is missing; expected shape \(48, 2\)"):
        lora.load_peft(d, config)
    save_file({**weights, name: np.zeros((48, 3), np.float32)}, d / lora.PEFT_WEIGHTS)
    with pytest.raises(models.CheckpointError, match=r"has shape \(48, 3\).*expects \(48, 2\)"):
        lora.load_peft(d, config)
    save_file(weights, d / lora.PEFT_WEIGHTS)
    for change, match in [({"target_modules": ["q_proj", "qkv_proj"]},
                           r"\['qkv_proj'\] match no projection"),
                          ({"target_modules": "q_proj|up_proj"}, "is a pattern"),
                          ({"use_dora": True}, "use_dora=True is not supported"),
                          ({"peft_type": "IA3"}, "peft_type is 'IA3'"),
                          ({"r": 40}, "rank 40 exceeds")]:
        (d / lora.PEFT_CONFIG).write_text(json.dumps({**raw, **change}))
        with pytest.raises(models.CheckpointError, match=match):
            lora.load_peft(d, config)
    (d / lora.PEFT_CONFIG).write_text(json.dumps({**raw, "target_modules": ["q_proj"]}))
    with pytest.raises(models.CheckpointError, match=r"not expected for targets \['q_proj'\]"):
        lora.load_peft(d, config)
    (d / lora.PEFT_WEIGHTS).unlink()
    with pytest.raises(models.CheckpointError, match="adapter_model.bin files are never read"):
        lora.load_peft(d, config)
    with pytest.raises(models.ConfigError,
                       match="architecture is 'LlamaForSequenceClassification'"):
        lora.save_peft(tmp_path / "b", _config("llama", num_labels=1), adapters, cfg)
