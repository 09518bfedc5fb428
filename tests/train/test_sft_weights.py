"""Per-token SFT loss weights: the weighted token mean equals a hand computation from
the logits, unit weights give the plain loss, micro-batches add up to the whole batch,
the windowed loss agrees, and bad weights are refused at the boundary."""

import jax
import numpy as np
import pytest

from rewardjax import recipes
from rewardjax.models import apply
from rewardjax.recipes.warm_start import add_sft_denominator, windowed_sft_loss
from rewardjax.train.sft import sft_loss

SPEC = recipes.BackboneConfig(hidden_size=32, intermediate_size=64, num_layers=1, num_heads=2,
                              num_kv_heads=1, head_dim=16)
B, T = 4, 12


def _batch():
    rng = np.random.default_rng(0)
    tokens = rng.integers(3, 200, (B, T)).astype(np.int32)
    lengths = np.array([12, 9, 7, 10])
    mask = np.arange(T)[None, :] >= (T - lengths)[:, None]
    tokens = np.where(mask, tokens, 0)
    loss_mask = mask & (np.arange(T)[None, :] >= T - 5)
    return {"tokens": tokens, "attention_mask": mask, "loss_mask": loss_mask,
            "positions": None}


def _weights(tokens, loss_mask):
    # 5 on the last token of each row, 1 elsewhere, 7 on prompt tokens (must be ignored)
    w = np.where(loss_mask, 1.0, 7.0)
    w[:, -1] = 5.0
    return w


def test_weighted_loss_equals_hand_computation():
    backbone = recipes.load_backbone(SPEC, jax.random.key(0))
    raw = _batch()
    batch = add_sft_denominator(raw, _weights)
    logits, _ = apply(backbone.params, raw["tokens"], None, config=backbone.config,
                      mask_bt=raw["attention_mask"])
    logits = np.asarray(logits, np.float64)
    expected_num = expected_den = 0.0
    for b in range(B):
        for t in range(1, T):
            if not raw["loss_mask"][b, t]:
                continue
            z = logits[b, t - 1]
            nll = np.log(np.exp(z - z.max()).sum()) + z.max() - z[raw["tokens"][b, t]]
            w = 5.0 if t == T - 1 else 1.0
            expected_num += w * nll
            expected_den += w
    assert batch["denominator"][0] == expected_den == 4 * 4 + 4 * 5
    np.testing.assert_array_equal(batch["loss_weights"][raw["loss_mask"] == 0], 0)
    loss, metrics = jax.jit(sft_loss, static_argnames="config")(
        backbone.params, batch, config=backbone.config)
    assert float(loss) == pytest.approx(expected_num / expected_den, rel=1e-5)
    windowed, _ = windowed_sft_loss(backbone.params, batch, config=backbone.config, window=6)
    assert float(windowed) == pytest.approx(float(loss), rel=1e-5)
    plain, plain_metrics = sft_loss(backbone.params, add_sft_denominator(raw),
                                    config=backbone.config)
    # the metric is the unweighted token mean whatever the weights
    assert float(metrics["loss/sft"]) == pytest.approx(float(plain_metrics["loss/sft"]))
    assert float(plain) == pytest.approx(float(plain_metrics["loss/sft"]), rel=1e-5)
    assert float(loss) != pytest.approx(float(plain), rel=1e-3)


def test_unit_weights_and_micro_batches():
    backbone = recipes.load_backbone(SPEC, jax.random.key(0))
    raw = _batch()
    plain, _ = sft_loss(backbone.params, add_sft_denominator(raw), config=backbone.config)
    ones, _ = sft_loss(backbone.params, add_sft_denominator(raw, lambda t, m: np.ones(t.shape)),
                       config=backbone.config)
    assert float(ones) == pytest.approx(float(plain), rel=1e-6)
    whole = add_sft_denominator(raw, _weights)
    total = 0.0
    for rows in (slice(0, 2), slice(2, 4)):
        part = {k: (v if v is None or k == "denominator" else v[rows]) for k, v in whole.items()}
        total += float(sft_loss(backbone.params, part, config=backbone.config)[0])
    assert total == pytest.approx(float(sft_loss(backbone.params, whole,
                                                 config=backbone.config)[0]), rel=1e-5)


@pytest.mark.parametrize("fn, match", [
    (lambda t, m: np.ones((B, T - 1)), r"shape \(4, 11\); expected"),
    (lambda t, m: -np.ones(t.shape), "finite and >= 0"),
    (lambda t, m: np.full(t.shape, np.nan), "finite and >= 0"),
])
def test_bad_weights_are_refused(fn, match):
    with pytest.raises(ValueError, match=match):
        add_sft_denominator(_batch(), fn)


def test_span_token_weights_zero_a_tool_output_inside_the_completion():
    from rewardjax.data.tokenizer import default_tokenizer
    tok = default_tokenizer()
    ids = lambda s: tok(s, add_special_tokens=False)["input_ids"]  # noqa: E731
    head, span, tail = "Q <call>python: print(2+3)</call>", "<out>5</out>\n", "Answer: 5"
    tokens = np.asarray([ids(head) + ids(span) + ids(tail)])
    assert tokens.shape[1] == len(ids(head + span + tail))  # the tags tokenize alone
    loss_mask = np.ones_like(tokens, bool)
    loss_mask[0, :2] = False  # "Q " is prompt
    w = recipes.span_token_weights(tok, "<out>", "</out>\n", weight=0.0)(tokens, loss_mask)
    a, b = len(ids(head)), len(ids(head)) + len(ids(span))
    expected = np.ones(tokens.shape, np.float32)
    expected[0, a:b] = 0.0
    np.testing.assert_array_equal(w, expected)
    # an unclosed span runs to the end; a span opened inside the prompt is left alone
    w = recipes.span_token_weights(tok, "<out>", "</out>\n", weight=0.5)(tokens[:, :a + 3],
                                                                          loss_mask[:, :a + 3])
    assert w[0, :a].tolist() == [1.0] * a and w[0, a:].tolist() == [0.5] * 3
    prompt_only = np.zeros_like(loss_mask)
    assert np.all(recipes.span_token_weights(tok, "<out>", "</out>\n", weight=0.0)(
        tokens, prompt_only) == 1.0)
    with pytest.raises(ValueError, match="open_text=''"):
        recipes.span_token_weights(tok, "", "</out>", weight=0.0)
    with pytest.raises(ValueError, match="weight must be >= 0"):
        recipes.span_token_weights(tok, "<out>", "</out>", weight=-1.0)
