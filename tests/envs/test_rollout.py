"""Multi-turn rollouts on a scripted environment: sequences, masks, turns, log-probs,
the loss's gradient on observations, compilations, time limits and bad input."""

import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rewardjax.envs.base import Environment, Transition
from rewardjax.envs.rollout import (EndReason, MultiTurnDriver, RolloutConfig, append_tokens)
from rewardjax.losses.policy import policy_loss
from rewardjax.models import transformer
from rewardjax.sampling import SamplerConfig, sample
from rewardjax.sampling.controls import token_logprobs
from rewardjax.sampling.logprobs import completion_logprobs
from rewardjax.sampling.stepwise import StepConfig, StepGenerator
from tests.sampling.conftest import TINY, random_params
from tests.train.test_rl import CompileCounter

DELIMS = ((5,), (7,), (11,), (13,))
EOS = 3
_BASE = 48  # token i <-> chr(48 + i): "0".."o" for the 64-token TINY vocabulary


class CharTokenizer:
    """One character per token id (the Hugging Face call conventions the driver uses)."""

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": [ord(c) - _BASE for c in text]}

    def decode(self, ids, skip_special_tokens=False):
        return "".join(chr(_BASE + int(i)) for i in ids)


TOK = CharTokenizer()


def _text(ids):
    return TOK.decode(ids)


class Scripted(Environment):
    """Record {"prompt": ids, "stop": k}: the rollout ends at turn k (reward 10 + k);
    before that, turn t's observation is `obs(rollout's record, t)` with reward 1."""

    def __init__(self, delay_s: float = 0.0):
        self.delay_s = delay_s
        self.calls: list[list[int]] = []

    def reset(self, record):
        return _text(record["prompt"])

    def step(self, turns):
        time.sleep(self.delay_s)
        self.calls.append([t.rollout for t in turns])
        return [Transition(observation="", reward=10.0 + t.turn + 1, done=True, info={"ok": 1.0})
                if t.turn + 1 == t.record["stop"] else
                Transition(observation=_text(obs(t.record, t.turn)), reward=1.0, done=False)
                for t in turns]


def obs(record, turn):
    # Observation lengths differ by record and turn (1..5 tokens) and avoid the
    # delimiters and eos, so holes and varied lengths are both exercised.
    n = 1 + (record["stop"] + 2 * turn) % 5
    return [20 + (record["stop"] * 7 + turn * 3 + j) % 40 for j in range(n)]


@pytest.fixture(scope="module")
def params():
    return random_params(TINY, std=0.3)


def _config(temperature=0.0, **kw):
    steps = StepConfig(delimiters=DELIMS, eos_ids=(EOS,), step_tokens=6, max_tokens=48,
                       temperature=temperature, prompt_buckets=(16,), row_buckets=(4, 8))
    return RolloutConfig(steps=steps, **{"max_turns": 4, "observation_tokens": 6, **kw})


def _records(seed, stops):
    rng = np.random.RandomState(seed)
    lengths = rng.randint(3, 12, size=len(stops))
    return [{"prompt": rng.randint(20, 60, size=n).tolist(), "stop": s}
            for n, s in zip(lengths, stops)]


def _reference(params, record, config):
    """One rollout alone, turn by turn with the plain sampler on the whole context."""
    steps = config.steps
    sampling = SamplerConfig(max_new_tokens=steps.step_tokens, temperature=0.0, eos_ids=(EOS,),
                             stop_sequences=DELIMS, prompt_buckets=(64,))
    context, response, loss = list(record["prompt"]), [], []
    for t in range(config.max_turns):
        s = jax.device_get(sample(params, [context], config=TINY, sampling=sampling))
        seg = s.tokens[0, 0, :s.lengths[0, 0]].tolist()
        context += seg
        response += seg
        loss += [True] * len(seg)
        if t + 1 in (record["stop"], config.max_turns) or EOS in seg:
            return response, loss, t + 1
        o = obs(record, t)
        context += o
        response += o
        loss += [False] * len(o)


def test_rollouts_ending_at_different_turns_match_each_rollout_run_alone(params):
    config = _config()
    driver = MultiTurnDriver(model_config=TINY, tokenizer=TOK, env=Scripted(), config=config)
    records = _records(0, stops=(1, 3, 2, 5))
    ro, metrics = driver.run(params, records)
    # stop 5 > max_turns: that rollout is cut by the turn budget after 4 turns
    np.testing.assert_array_equal(ro.turns, [1, 3, 2, 4])
    np.testing.assert_array_equal(ro.end_reason, [EndReason.DONE, EndReason.DONE,
                                                  EndReason.DONE, EndReason.TURNS])
    np.testing.assert_allclose(ro.rewards, [11.0, 2 + 13.0, 1 + 12.0, 4.0])
    for r, record in enumerate(records):
        want, want_loss, _ = _reference(params, record, config)
        n = int(ro.mask[r].sum())
        assert ro.tokens[r, :n].tolist() == want, r
        assert ro.loss_mask[r, :n].tolist() == want_loss, r
        assert not ro.loss_mask[r, n:].any() and not ro.mask[r, n:].any()
        assert np.all(ro.logprobs[r][~ro.loss_mask[r]] == 0.0)
        prompt = ro.prompt_tokens[r][ro.prompt_mask[r]].tolist()
        assert prompt == record["prompt"]
    # the observations are in the transcript as the environment wrote them
    assert ro.transcripts[1][1] == _text(obs(records[1], 0))
    assert len(ro.transcripts[3]) == 2 * 4 - 1
    assert metrics["turns/mean"] == pytest.approx(10 / 4)
    assert metrics["end/done"] == 0.75 and metrics["end/turns"] == 0.25
    assert ro.infos[:3] == [{"ok": 1.0}] * 3 and ro.infos[3] == {} and metrics["ok"] == 0.75


def test_only_waiting_rollouts_reach_the_environment(params):
    env = Scripted()
    driver = MultiTurnDriver(model_config=TINY, tokenizer=TOK, env=env, config=_config())
    driver.run(params, _records(0, stops=(1, 3, 2, 5)))
    assert env.calls == [[0, 1, 2, 3], [1, 2, 3], [1, 3], [3]]


def test_logprobs_equal_teacher_forced_and_observations_get_no_gradient(params):
    config = _config(temperature=1.0)
    driver = MultiTurnDriver(model_config=TINY, tokenizer=TOK, env=Scripted(), config=config)
    ro, _ = driver.run(params, _records(1, stops=(2, 3, 4, 3)), jax.random.key(3), copies=2)
    assert (~ro.loss_mask & ro.mask).any() and len(set(ro.turns.tolist())) > 1
    tf = np.asarray(completion_logprobs(params, ro.prompt_tokens, ro.prompt_mask, ro.tokens,
                                        ro.mask, config=TINY, temperature=1.0))
    np.testing.assert_allclose(ro.logprobs[ro.loss_mask], tf[ro.loss_mask], atol=1e-4)

    # The policy loss as a function of the logits at every response position: the
    # logits that predict observation tokens get exactly zero gradient.
    tokens, mask = ro.sequences()
    P = ro.prompt_tokens.shape[1]
    C = ro.tokens.shape[1]
    hidden, _ = transformer.apply(params, jnp.asarray(tokens), config=TINY, mask_bt=mask,
                                  output="hidden")
    logits = transformer.project(params, hidden[:, P - 1:P + C - 1], config=TINY)
    adv = np.where(ro.loss_mask, (ro.rewards - ro.rewards.mean())[:, None] + 0.5, 0.0)

    def loss(logits_ncv):
        logp = token_logprobs(logits_ncv, jnp.asarray(ro.tokens))
        return policy_loss(logp, jnp.asarray(ro.logprobs), jnp.asarray(adv, jnp.float32),
                           jnp.asarray(ro.loss_mask), reduction="token_mean")[0]

    grad = np.asarray(jax.grad(loss)(logits))
    per_position = np.abs(grad).sum(-1)
    observation = ro.mask & ~ro.loss_mask
    assert np.all(per_position[observation] == 0.0)
    assert np.all(per_position[~ro.mask] == 0.0)
    assert np.all(per_position[ro.loss_mask] > 0.0)


def test_no_recompilation_from_the_second_rollout(params):
    counter = CompileCounter()
    config = _config(temperature=1.0)
    driver = MultiTurnDriver(model_config=TINY, tokenizer=TOK, env=Scripted(), config=config)
    driver.run(params, _records(2, stops=(1, 4, 2)), jax.random.key(0), copies=2)
    first, programs = counter.count, driver.compiles()
    ro, _ = driver.run(params, _records(3, stops=(3, 2, 1)), jax.random.key(1), copies=2)
    assert len(set(ro.turns.tolist())) > 1
    assert counter.count == first
    assert driver.compiles() == programs


def test_an_environment_past_its_time_limit_ends_the_waiting_rollouts(params):
    config = _config(env_timeout_s=0.2)
    driver = MultiTurnDriver(model_config=TINY, tokenizer=TOK, env=Scripted(delay_s=0.6),
                             config=config)
    ro, metrics = driver.run(params, _records(0, stops=(2, 3)))
    np.testing.assert_array_equal(ro.end_reason, [EndReason.TIMEOUT] * 2)
    np.testing.assert_array_equal(ro.turns, [1, 1])
    assert metrics["env/timeouts"] == 2 and np.all(ro.rewards == 0)


def test_long_observations_are_truncated_and_counted(params):
    class Long(Scripted):
        def step(self, turns):
            return [Transition(observation=_text([30] * 9), reward=0.0, done=t.turn == 1)
                    for t in turns]

    driver = MultiTurnDriver(model_config=TINY, tokenizer=TOK, env=Long(), config=_config())
    ro, metrics = driver.run(params, _records(0, stops=(2,)))
    assert metrics["env/truncated_observations"] == 1
    assert int((ro.mask & ~ro.loss_mask).sum()) == 6


def test_append_tokens_continues_as_if_the_tokens_were_sampled(params):
    """Appending tokens and stepping equals prompting with them: the cache is exact."""
    steps = _config().steps
    gen = StepGenerator(params, config=TINY, steps=steps)
    state = append_tokens(gen, gen.start([[30, 31, 32], [40, 41]]), [[50, 51], []], width=4)
    state = gen.step(state)
    fresh = StepGenerator(params, config=TINY, steps=steps)
    want = fresh.step(fresh.start([[30, 31, 32, 50, 51], [40, 41]]))
    got_t, got_m, want_t, want_m = jax.device_get((state.tokens, state.real, want.tokens,
                                                   want.real))
    assert got_t[0][got_m[0]].tolist()[:2] == [50, 51]
    assert got_t[0][got_m[0]].tolist()[2:] == want_t[0][want_m[0]].tolist()
    assert got_t[1][got_m[1]].tolist() == want_t[1][want_m[1]].tolist()
    assert gen.counter.prefilled == 5 + 2


def test_bad_settings_are_named(params):
    with pytest.raises(ValueError, match="max_turns"):
        _config(max_turns=0)
    with pytest.raises(ValueError, match="no room for a second turn"):
        RolloutConfig(steps=StepConfig(delimiters=DELIMS, eos_ids=(EOS,), step_tokens=6,
                                       max_tokens=8), observation_tokens=4)
    with pytest.raises(TypeError, match="Environment"):
        MultiTurnDriver(model_config=TINY, tokenizer=TOK, env=object(), config=_config())

    class Short(Scripted):
        def step(self, turns):
            return []

    driver = MultiTurnDriver(model_config=TINY, tokenizer=TOK, env=Short(), config=_config())
    with pytest.raises(ValueError, match="Short.step returned 0 transitions for 1 turns"):
        driver.run(params, _records(0, stops=(2,)))
    gen = StepGenerator(params, config=TINY, steps=_config().steps)
    with pytest.raises(ValueError, match="row 0 has 5 tokens, width is 4"):
        append_tokens(gen, gen.start([[1, 2]]), [[1] * 5], width=4)
