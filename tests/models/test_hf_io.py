"""Export to and import from Hugging Face directories; clear errors for bad checkpoints."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from rewardjax import models, sharding
from rewardjax.models import hf
from tests.models.conftest import hf_logits, left_padded_batch, transformers
from tests.models.hf_export_worker import export_case

ROOT = Path(__file__).resolve().parents[2]


def _tiny(model_type="qwen2", **kw):
    base = dict(model_type=model_type, vocab_size=61, hidden_size=32, intermediate_size=48,
                num_layers=2, num_heads=4, num_kv_heads=2, head_dim=8, pad_token_id=0,
                qkv_bias=model_type == "qwen2", qk_norm=model_type == "qwen3")
    base.update(kw)
    return models.ModelConfig(**base)


@pytest.mark.parametrize("model_type,tie,labels", [("qwen2", True, 0), ("llama", False, 0),
                                                   ("qwen3", False, 0), ("llama", False, 2)])
def test_export_roundtrip_through_transformers(tmp_path, model_type, tie, labels):
    config = _tiny(model_type, tie_word_embeddings=tie, num_labels=labels)
    params = models.init_params(config, jax.random.key(0), std=0.1)
    hf.save(tmp_path, config, params)
    auto = (transformers.AutoModelForSequenceClassification if labels
            else transformers.AutoModelForCausalLM)
    hf_model = auto.from_pretrained(tmp_path, local_files_only=True).eval()
    tokens, mask, positions = left_padded_batch(vocab=61)
    ref = hf_logits(hf_model, tokens, mask, positions)
    if labels:
        ours = models.sequence_scores(params, jnp.asarray(tokens), jnp.asarray(mask), config=config)
        np.testing.assert_allclose(np.asarray(ours), ref, atol=1e-5, rtol=0)
    else:
        ours, _ = models.apply(params, jnp.asarray(tokens), config=config, mask_bt=jnp.asarray(mask))
        assert np.abs(np.asarray(ours) - ref)[mask == 1].max() < 1e-5
    # and back into rewardjax unchanged
    config2, params2 = hf.load(tmp_path)
    assert config2 == config
    jax.tree.map(np.testing.assert_array_equal, params, params2)


def test_sharded_checkpoint_with_index_loads(tmp_path):
    config = _tiny("llama")
    params = models.init_params(config, jax.random.key(1))
    hf.save(tmp_path / "ours", config, params, max_shard_bytes=20_000)
    files = sorted(p.name for p in (tmp_path / "ours").glob("*.safetensors"))
    assert len(files) > 2 and (tmp_path / "ours" / hf.INDEX_FILE).exists()
    _, loaded = hf.load(tmp_path / "ours")
    jax.tree.map(np.testing.assert_array_equal, params, loaded)
    # and a checkpoint sharded by transformers itself
    model = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "ours", local_files_only=True)
    model.save_pretrained(tmp_path / "theirs", max_shard_size="20KB")
    assert len(list((tmp_path / "theirs").glob("*.safetensors"))) > 2
    _, loaded = hf.load(tmp_path / "theirs")
    jax.tree.map(np.testing.assert_array_equal, params, loaded)


def test_bfloat16_export_and_load(tmp_path):
    import ml_dtypes
    config = _tiny("qwen3")
    params = models.init_params(config, jax.random.key(2))
    hf.save(tmp_path, config, params, dtype=ml_dtypes.bfloat16)
    assert json.loads((tmp_path / "config.json").read_text())["torch_dtype"] == "bfloat16"
    _, loaded = hf.load(tmp_path, dtype=jnp.bfloat16)
    assert loaded["embed"].dtype == jnp.bfloat16
    np.testing.assert_array_equal(np.asarray(loaded["embed"]),
                                  np.asarray(params["embed"].astype(jnp.bfloat16)))


# ----------------------------------------------------------------------------- export from a mesh


def _spy_gathers(monkeypatch) -> list[tuple[int, ...]]:
    """Records the shape of every array `hf` gathers onto the host."""
    shapes = []
    real = sharding.host_local_array

    def spy(x):
        shapes.append(tuple(x.shape))
        return real(x)

    monkeypatch.setattr(sharding, "host_local_array", spy)
    return shapes


def _placed(config, params):
    mesh = sharding.make_mesh(data=2, fsdp=2, tensor=2)
    rules = sharding.logical_rules(fsdp=True, tensor_parallel=True)
    return sharding.place(params, models.param_axes(config), mesh, rules)


def test_export_from_a_sharded_model_gathers_one_tensor_at_a_time(tmp_path, monkeypatch):
    config, init = export_case()
    params = jax.jit(init)(jax.random.key(3))
    placed = _placed(config, params)
    # [L, D, F] split over fsdp (D) and tensor (F): no device holds a whole tensor
    assert {s.data.shape for s in placed["layers"]["w_up"].addressable_shards} == {(2, 16, 24)}
    hf.save(tmp_path / "unsharded", config, params, max_shard_bytes=20_000)
    sizes = [a.size for _, a in hf.hf_tensors(config, params)]
    gathered = _spy_gathers(monkeypatch)
    hf.save(tmp_path / "sharded", config, placed, max_shard_bytes=20_000)
    # one gather per HF tensor (one layer of a stacked parameter), never a whole parameter
    assert [int(np.prod(s)) for s in gathered] == sizes
    files = sorted(p.name for p in (tmp_path / "unsharded").iterdir())
    assert len(files) > 3 and files == sorted(p.name for p in (tmp_path / "sharded").iterdir())
    for name in files:
        assert (tmp_path / "sharded" / name).read_bytes() == \
            (tmp_path / "unsharded" / name).read_bytes(), name
    _, loaded = hf.load(tmp_path / "sharded")
    jax.tree.map(np.testing.assert_array_equal, params, loaded)
    hf_model = transformers.AutoModelForCausalLM.from_pretrained(
        tmp_path / "sharded", local_files_only=True).eval()
    tokens, mask, positions = left_padded_batch(vocab=64)
    ours, _ = models.apply(params, jnp.asarray(tokens), config=config, mask_bt=jnp.asarray(mask))
    ref = hf_logits(hf_model, tokens, mask, positions)
    assert np.abs(np.asarray(ours) - ref)[mask == 1].max() < 1e-5


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_process_export_matches_one_process(tmp_path):
    config, init = export_case()
    hf.save(tmp_path / "one", config, jax.jit(init)(jax.random.key(3)), max_shard_bytes=20_000)
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    procs = [subprocess.Popen(
        [sys.executable, "-m", "tests.models.hf_export_worker", str(port), str(i),
         str(tmp_path / "two")], cwd=ROOT, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True) for i in range(2)]
    logs = [p.communicate(timeout=300)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), "\n".join(log[-3000:] for log in logs)
    files = sorted(p.name for p in (tmp_path / "one").iterdir())
    assert files == sorted(p.name for p in (tmp_path / "two").iterdir())
    for name in files:
        assert (tmp_path / "two" / name).read_bytes() == (tmp_path / "one" / name).read_bytes()


def test_export_writes_only_on_process_zero_but_gathers_on_every_process(tmp_path, monkeypatch):
    config = _tiny("llama", vocab_size=64)
    placed = _placed(config, models.init_params(config, jax.random.key(4)))
    gathered = _spy_gathers(monkeypatch)
    monkeypatch.setattr(jax, "process_index", lambda: 1)
    hf.save(tmp_path / "out", config, placed, max_shard_bytes=20_000)
    assert not (tmp_path / "out").exists()
    # 9 per-layer tensors x 2 layers + embed, final norm, lm_head
    assert len(gathered) == 9 * 2 + 3


def test_export_is_byte_identical_to_safetensors_with_mixed_dtypes(tmp_path):
    config = _tiny("qwen3")
    params = models.init_params(config, jax.random.key(5))
    # bfloat16 matrices with float32 norms: a file holding two dtypes, which safetensors
    # orders by dtype before name
    mixed = jax.tree_util.tree_map_with_path(
        lambda path, x: x if path[-1].key.endswith("norm") else x.astype(jnp.bfloat16), params)
    hf.save(tmp_path / "ours", config, mixed)
    save_file(dict(hf.hf_tensors(config, mixed)), tmp_path / "theirs.safetensors",
              metadata={"format": "pt"})
    assert (tmp_path / "ours" / hf.SINGLE_FILE).read_bytes() == \
        (tmp_path / "theirs.safetensors").read_bytes()


def test_export_of_params_that_do_not_match_the_config_is_refused(tmp_path):
    config = _tiny("llama")
    params = models.init_params(_tiny("llama", intermediate_size=64), jax.random.key(0))
    with pytest.raises(hf.CheckpointError, match=r"params 'layers/w_gate' has shape \(2, 32, 64\) "
                                                  r"but config \(intermediate_size=48"):
        hf.save(tmp_path / "out", config, params)
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------- config forms


def _hf_dict(**kw):
    d = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 10,
         "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
         "num_attention_heads": 2, "num_key_value_heads": 1}
    d.update(kw)
    return d


def test_config_reads_both_rope_forms():
    scaling = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
               "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}
    old = models.ModelConfig.from_hf(_hf_dict(rope_theta=500000.0, rope_scaling=scaling))
    new = models.ModelConfig.from_hf(_hf_dict(rope_parameters={**scaling, "rope_theta": 500000.0}))
    assert old == new
    assert old.rope_theta == 500000.0 and old.rope_scaling.rope_type == "llama3"
    # legacy "type" key
    lin = models.ModelConfig.from_hf(_hf_dict(rope_scaling={"type": "linear", "factor": 2.0}))
    assert lin.rope_scaling.rope_type == "linear" and lin.rope_theta == 10000.0
    # round trip through to_hf keeps it
    assert models.ModelConfig.from_hf(new.to_hf()) == new


def test_qwen3_head_dim_independent_of_width():
    cfg = models.ModelConfig.from_hf(_hf_dict(model_type="qwen3", architectures=["Qwen3ForCausalLM"],
                                              head_dim=40))
    assert cfg.head_dim == 40 and cfg.qk_norm and not cfg.qkv_bias


# ----------------------------------------------------------------------------- bad input


@pytest.fixture
def saved(tmp_path):
    config = _tiny("llama")
    hf.save(tmp_path, config, models.init_params(config, jax.random.key(3)))
    return tmp_path


def _edit_tensors(path, fn):
    tensors = load_file(path / hf.SINGLE_FILE)
    fn(tensors)
    save_file(tensors, path / hf.SINGLE_FILE)


def test_missing_tensor_is_named(saved):
    _edit_tensors(saved, lambda t: t.pop("model.layers.1.mlp.up_proj.weight"))
    with pytest.raises(hf.CheckpointError, match=r"'model\.layers\.1\.mlp\.up_proj\.weight' is missing; "
                                                  r"expected shape \(48, 32\)"):
        hf.load(saved)


def test_wrong_shape_is_named(saved):
    def change(t):
        t["model.layers.0.self_attn.k_proj.weight"] = np.zeros((8, 32), np.float32)
    _edit_tensors(saved, change)
    with pytest.raises(hf.CheckpointError, match=r"'model\.layers\.0\.self_attn\.k_proj\.weight' has "
                                                  r"shape \(8, 32\) .*num_key_value_heads=2.* expects \(16, 32\)"):
        hf.load(saved)


@pytest.mark.parametrize("field,value,message", [
    ("model_type", "gpt2", r"model_type 'gpt2' is not supported"),
    ("architectures", ["LlamaForTokenClassification"], r"architectures \['LlamaForTokenClassification'\]"),
])
def test_unknown_model_type_or_architecture(saved, field, value, message):
    cfg = json.loads((saved / "config.json").read_text())
    cfg[field] = value
    (saved / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(models.ConfigError, match=message):
        hf.load(saved)


def test_config_disagreeing_with_weights(saved):
    cfg = json.loads((saved / "config.json").read_text())
    cfg["hidden_size"] = 64
    (saved / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(hf.CheckpointError, match=r"'model\.embed_tokens\.weight' has shape \(61, 32\) "
                                                  r"but config \(vocab_size=61, hidden_size=64\) expects \(61, 64\)"):
        hf.load(saved)
    cfg["hidden_size"], cfg["num_hidden_layers"] = 32, 1
    (saved / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(hf.CheckpointError, match=r"model\.layers\.1\..*not expected by config.*num_hidden_layers=1"):
        hf.load(saved)


def test_missing_config_field_is_named(saved):
    cfg = json.loads((saved / "config.json").read_text())
    del cfg["intermediate_size"]
    (saved / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(models.ConfigError, match=r"required field 'intermediate_size' is missing"):
        hf.load(saved)


def test_pickle_checkpoints_are_refused(tmp_path):
    config = _tiny("llama")
    (tmp_path / "config.json").write_text(json.dumps(config.to_hf()))
    (tmp_path / "pytorch_model.bin").write_bytes(b"\x80\x04not really a pickle")
    with pytest.raises(hf.CheckpointError, match=r"only safetensors .*never pickled"):
        hf.load(tmp_path)
