"""Search on a (2, 2, 2) mesh of 8 simulated devices gives the one-device results."""

import jax
import numpy as np

from rewardjax import recipes, search
from rewardjax.sharding import MeshConfig
from rewardjax.train import placement as placement_lib

SMALL = recipes.BackboneConfig(hidden_size=32, intermediate_size=64, num_layers=1, num_heads=4,
                               num_kv_heads=2, head_dim=8)


def _run(mesh: MeshConfig):
    bb = recipes.load_backbone(SMALL, jax.random.key(0), mesh)
    head = {"w": np.asarray(jax.random.normal(jax.random.key(1), (32, 1))),
            "b": np.zeros((1,), np.float32)}
    prm = {"backbone": bb.params, "head": head}
    tok = bb.tokenizer
    nl = search.delimiter_ids(tok, "\n")
    steps = search.StepConfig(delimiters=(nl, (tok.convert_tokens_to_ids("."),)),
                              eos_ids=(0, 2), step_tokens=6, max_tokens=24, max_steps=4,
                              temperature=1.0, prompt_buckets=(32,), row_buckets=(16,))
    with placement_lib.context(bb.placement):
        gen = search.StepGenerator(bb.params, config=bb.config, steps=steps)
        scorer = search.PRMScorer(prm, config=bb.config, tokenizer=tok)
        res = search.beam_search(gen, ["Start with 3. Add 2.", "Start with 1."],
                                 jax.random.key(3), n=8, expansions=2, tokenizer=tok,
                                 answer_fn=lambda t: t, scorer=scorer)
    return res


def test_beam_search_on_a_mesh_matches_one_device():
    one = _run(MeshConfig())
    mesh = _run(MeshConfig(data=2, fsdp=2, tensor=2))
    for a, b in zip(one.candidates, mesh.candidates):
        assert [c.text for c in a] == [c.text for c in b]
        np.testing.assert_allclose(np.concatenate([c.step_scores for c in a]),
                                   np.concatenate([c.step_scores for c in b]), atol=1e-4)
    assert one.chosen == mesh.chosen
    assert one.cost["generated"] == mesh.cost["generated"]
