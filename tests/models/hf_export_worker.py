"""One process of the two-process export test: `python -m tests.models.hf_export_worker`."""

import functools
import os
import sys


def export_case():
    """The model the sharded-export tests write, and how to initialize it."""
    from rewardjax import models

    config = models.ModelConfig(model_type="qwen2", vocab_size=64, hidden_size=32,
                                intermediate_size=48, num_layers=2, num_heads=4, num_kv_heads=2,
                                head_dim=8, pad_token_id=0, qkv_bias=True)
    return config, functools.partial(models.init_params, config, std=0.1)


def main(port: int, process_id: int, out: str):
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
    os.environ["JAX_PLATFORMS"] = "cpu"
    import jax

    from rewardjax import models, sharding

    sharding.initialize_distributed(coordinator_address=f"127.0.0.1:{port}", num_processes=2,
                                    process_id=process_id, cpu_collectives="gloo")
    config, init = export_case()
    mesh = sharding.make_mesh(data=2, fsdp=2, tensor=2)
    shapes = jax.eval_shape(init, jax.random.key(3))
    target = sharding.tree_shardings(shapes, models.param_axes(config), mesh,
                                     sharding.logical_rules(fsdp=True, tensor_parallel=True))
    params = jax.jit(init, out_shardings=target)(jax.random.key(3))
    # each process holds only its half of a split parameter
    assert not params["layers"]["w_up"].is_fully_addressable
    models.hf.save(out, config, params, max_shard_bytes=20_000)
    jax.distributed.shutdown()


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3])
