"""The memory planner (`python -m rewardjax plan`, `rewardjax.plan`).

The Llama-3-8B plans run the command line in a subprocess: it starts JAX with the
mesh's device count (64, or 1) itself, which this pytest process (8 devices) cannot.
They use `--scan-layers` to keep the compile short; parameter and optimizer bytes do
not depend on it.
"""

import json
import os
import re
import subprocess
import sys

import pytest

from rewardjax import plan as plan_lib
from rewardjax.models import ModelConfig
from rewardjax.models.lora import LoraConfig
from rewardjax.sharding import MeshConfig

# Llama-3-8B's shape (meta-llama/Meta-Llama-3-8B config.json).
LLAMA3_8B = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 128256,
    "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
    "num_attention_heads": 32, "num_key_value_heads": 8, "rms_norm_eps": 1e-5,
    "rope_theta": 500000.0, "max_position_embeddings": 8192, "tie_word_embeddings": False,
    "bos_token_id": 128000, "eos_token_id": 128001,
}
TINY = {
    "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "vocab_size": 512,
    "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
    "num_attention_heads": 4, "num_key_value_heads": 2, "tie_word_embeddings": True,
}
GiB = 2 ** 30


def _llama3_8b_param_bytes() -> int:
    """float32 bytes of Llama-3-8B, counted by hand from its shapes."""
    V, D, F, L, N, K, H = 128256, 4096, 14336, 32, 32, 8, 128
    layer = D * N * H + 2 * D * K * H + N * H * D + 3 * D * F + 2 * D
    count = 2 * V * D + L * layer + D  # embed + lm_head (untied) + layers + final norm
    assert count == 8_030_261_248  # the published 8.03B
    return 4 * count


def _write(tmp_path, config: dict):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    return path


def _plan_cli(*args):
    # The inherited XLA_FLAGS asks for 8 devices; the command must replace it.
    return subprocess.run([sys.executable, "-m", "rewardjax", "plan", *map(str, args)],
                          capture_output=True, text=True, timeout=900, env=dict(os.environ))


def test_llama3_8b_rl_update_on_64_devices_splits_params_and_optimizer_64_ways(tmp_path):
    config = _write(tmp_path, LLAMA3_8B)
    run = _plan_cli("--config", config, "--mesh", "data=1,fsdp=64,tensor=1", "--workload", "rl",
                    "--batch", 64, "--length", 256, "--scan-layers", "--json")
    assert run.returncode == 0, run.stderr
    p = json.loads(run.stdout)
    assert p["devices"] == 64 and p["mesh"] == [1, 64, 1]
    analytic = _llama3_8b_param_bytes() / 64
    assert p["analytic_params"] == analytic
    assert abs(p["params"] - analytic) / analytic < 0.05
    # AdamW's two moments in float32, like the params (plus two step counters).
    assert abs(p["optimizer"] - 2 * analytic) / (2 * analytic) < 0.05
    assert p["params"] < 0.5 * GiB  # unsharded it would be 29.9 GiB per device
    (step,) = p["programs"]
    assert step["name"] == "train_step" and step["temp"] > 0
    # The donated state is aliased, and every state byte is an argument of the step.
    assert step["alias"] >= p["params"] + p["optimizer"]
    assert step["argument"] >= p["params"] + p["optimizer"]
    assert p["total"] == step["argument"] + step["output"] - step["alias"] + step["temp"]
    assert p["fits"]["H200"] == (p["total"] <= 141 * GiB)


def test_llama3_8b_rl_update_on_one_device_does_not_fit_v5e(tmp_path):
    config = _write(tmp_path, LLAMA3_8B)
    run = _plan_cli("--config", config, "--mesh", "data=1", "--workload", "rl", "--batch", 64,
                    "--length", 256, "--scan-layers", "--device", "v5e")
    assert run.returncode == 1, run.stderr  # exit 1: does not fit the named device
    assert re.search(r"^\s*v5e\s+16 GiB: does not fit", run.stdout, re.M), run.stdout
    assert "(1 devices)" in run.stdout
    params = re.search(r"^parameters\s+([\d,]+)", run.stdout, re.M)
    assert int(params.group(1).replace(",", "")) == _llama3_8b_param_bytes()


def test_config_missing_a_field_fails_naming_it_before_compiling(tmp_path):
    broken = {k: v for k, v in LLAMA3_8B.items() if k != "num_hidden_layers"}
    run = _plan_cli("--config", _write(tmp_path, broken), "--mesh", "fsdp=64", "--workload",
                    "rl", "--batch", 64, "--length", 256)
    assert run.returncode == 2
    assert "'num_hidden_layers'" in run.stderr and "missing" in run.stderr
    assert "config.json" in run.stderr and run.stdout == ""


def test_bad_settings_are_named(tmp_path):
    config = plan_lib.load_config(_write(tmp_path, TINY))
    with pytest.raises(plan_lib.PlanError, match=r"batch = 6 rows .* data x fsdp = 4"):
        plan_lib.plan(config, MeshConfig(data=2, fsdp=2, tensor=2),
                      plan_lib.Workload(kind="sft", batch=6, length=16))
    with pytest.raises(plan_lib.PlanError, match="needs 16 devices but JAX started with 8"):
        plan_lib.plan(config, MeshConfig(data=1, fsdp=16, tensor=1),
                      plan_lib.Workload(kind="sft", batch=16, length=16))
    with pytest.raises(plan_lib.PlanError, match="LoRA is planned for the rl and sft"):
        plan_lib.Workload(kind="rm", batch=8, length=16, lora=LoraConfig(rank=2))
    with pytest.raises(plan_lib.PlanError, match="device 'a100'"):
        plan_lib.accelerator("a100")


def test_lora_rl_update_carries_optimizer_state_for_adapters_only(tmp_path):
    config = plan_lib.load_config(_write(tmp_path, TINY))
    lora = LoraConfig(rank=4, targets=("q", "v"))
    p = plan_lib.plan(config, MeshConfig(data=2, fsdp=2, tensor=2),
                      plan_lib.Workload(kind="rl", batch=8, length=32, lora=lora,
                                        compute_dtype="bfloat16"))
    adapters = p.params - p.frozen_params
    # q, v adapters: A [L, D, r] split over fsdp, B [L, r, n*H] split over tensor.
    D, L, r = 64, 2, 4
    q_b, v_b = 4 * 16, 2 * 16
    assert adapters == 4 * (2 * L * D * r // 2 + L * r * (q_b + v_b) // 2)
    assert p.optimizer == 2 * adapters + 2 * 4  # Adam's moments + two int32 counters
    (step,) = p.programs
    # The frozen base is an argument of the step next to the state, but is not donated.
    assert step.argument >= p.params + p.optimizer
    assert adapters + p.optimizer <= step.alias < adapters + p.optimizer + p.frozen_params


def test_sampling_plans_prefill_and_decode():
    config = ModelConfig.from_hf(TINY)
    p = plan_lib.plan(config, MeshConfig(data=4, fsdp=2, tensor=1),
                      plan_lib.Workload(kind="sample", batch=8, length=64, completion_length=48))
    assert [prog.name for prog in p.programs] == ["prefill", "decode"]
    assert p.optimizer == 0 and p.total == max(prog.total for prog in p.programs)
    prefill, decode = p.programs
    # Decode's argument is the state holding the full-length cache: L x 2 x [R, K, S, H].
    cache = 2 * 2 * 8 * 2 * 64 * 16 * 4 // 8
    assert decode.argument >= p.params + cache
    assert "XLA decode" in plan_lib.format_plan(p)


def test_cli_replans_in_a_fresh_process_when_jax_started_with_too_few_devices(tmp_path, capfd):
    from rewardjax import cli

    config = _write(tmp_path, TINY)
    code = cli.main(["plan", "--config", str(config), "--mesh", "data=16", "--workload", "sft",
                     "--batch", "16", "--length", "16", "--device", "H100"])
    out = capfd.readouterr().out
    assert code == 0, out
    assert "data=16 fsdp=1 tensor=1 (16 devices)" in out
    assert re.search(r"^\s*H100\s+80 GiB: fits", out, re.M)
