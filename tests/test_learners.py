"""One contract every learner passes, whatever its mode (``modes.MODES``), in the spirit of river's
``check_estimator``: the checks are written once and run for each mode on the real tiny.en.

- a fresh adapter changes nothing;
- a batched pass gives each example the loss it has alone;
- an exception inside an update restores the weights and the optimizer, and keeps what is pending;
- ``state_dict()`` round-trips exactly, and a learner loaded from it goes on as the original does.
"""

from __future__ import annotations

import copy
from dataclasses import replace

import pytest
import torch
from conftest import TEXTS, add_entry, same_weights, weights

from ffasr_cli import ASRAgent
from ffasr_cli.lora import disabled_adapters
from ffasr_cli.modes import MODES

# logits mode trains a small head adapter: it needs a larger rate to move in one update
RATES = {"logits": 3e-3}
FIXES = {
    "kubernetes_deploy": TEXTS["kubernetes_deploy"],
    "kubernetes_cluster": TEXTS["kubernetes_cluster"],
    "weather": "The weather is fine today, let's go for a walk.",
}


def learner_of(mode: str, seed: int = 0, **options) -> ASRAgent:
    settings = {"accumulation_steps": 2, "cache_dtype": "float32", "learning_rate": RATES.get(mode, 6e-4), **options}
    return ASRAgent(mode=mode, seed=seed, **settings)


def teach(agent: ASRAgent, captures, mode: str, *names: str) -> None:
    for name in names:
        agent.compute_loss_from_cache(add_entry(agent, captures.windows(mode, name, "float32")), FIXES[name])


def optimizer_state(agent: ASRAgent) -> dict:
    return copy.deepcopy(agent.learner.optimizer.state_dict()["state"])


def assert_same_optimizer(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for index in a:
        assert a[index].keys() == b[index].keys()
        for key in a[index]:
            assert torch.equal(a[index][key], b[index][key]), (index, key)


@pytest.fixture(params=sorted(MODES))
def mode(request) -> str:
    return request.param


def test_a_fresh_adapter_changes_nothing(captures, mode):
    agent = learner_of(mode)
    (window,) = captures.windows(mode, "kubernetes_deploy", "float32")
    target = agent.learner.example(agent.cache.add((window,)), FIXES["kubernetes_deploy"]).targets[0]
    with torch.no_grad():
        adapted = agent.mode.losses([target])
        with disabled_adapters(agent.model):
            base = agent.mode.losses([target])
    torch.testing.assert_close(adapted, base, rtol=0, atol=0)


def test_a_batched_pass_gives_each_example_its_own_loss(captures, mode):
    # Labels of different lengths are right-padded into one pass; the decoder is causal, so a
    # row's loss (and KL) must not see the padding nor the other rows.
    agent = learner_of(mode, accumulation_steps=1, kl_weight=0.5)
    teach(agent, captures, mode, "kubernetes_deploy")
    assert agent.step_if_ready()  # the adapter is no longer the identity: it takes part
    names = ["weather", "kubernetes_cluster"]
    examples = [agent.learner.example(agent.cache.add(captures.windows(mode, n, "float32")), FIXES[n]) for n in names]
    targets = [e.targets[0] for e in examples] + [replace(examples[0].targets[0], tokens=(agent.tokenizer.eot,))]
    assert len({len(t.tokens) for t in targets}) == len(targets)
    batched = agent.mode.losses(targets)
    alone = torch.stack([agent.mode.losses([t])[0] for t in targets])
    # on a GPU, full mode's fp16 encoder rounds differently with the batch size; leaked padding would cost far more
    rtol = 2e-3 if mode == "full" and agent.device != "cpu" else 1e-4
    torch.testing.assert_close(batched, alone, rtol=rtol, atol=1e-5)


def test_an_exception_inside_an_update_restores_weights_and_optimizer(captures, mode, monkeypatch):
    agent = learner_of(mode, inner_steps=2)
    teach(agent, captures, mode, "kubernetes_deploy", "kubernetes_cluster")
    assert agent.step_if_ready()  # the optimizer has moments now
    teach(agent, captures, mode, "weather", "kubernetes_deploy")
    before, moments = weights(agent), optimizer_state(agent)
    pending = [e.cache_id for e in agent.learner.pending]
    real_step, calls = agent.learner.optimizer.step, []

    def failing_step(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("a fault in the middle of an update")
        return real_step(*args, **kwargs)

    monkeypatch.setattr(agent.learner.optimizer, "step", failing_step)
    with pytest.raises(RuntimeError, match="a fault in the middle"):
        agent.step_if_ready()
    assert same_weights(agent, before)  # the first inner step was undone too
    assert_same_optimizer(optimizer_state(agent), moments)
    assert [e.cache_id for e in agent.learner.pending] == pending and agent.learner.steps == 1


def test_state_dict_round_trips_and_the_copy_goes_on_as_the_original(captures, mode):
    options = {"canary_size": 2, "replay_per_step": 1}
    original = learner_of(mode, **options)
    original.cache.add(captures.windows(mode, "weather", "float32"), cache_id="canary")
    original.accept("canary")
    teach(original, captures, mode, "kubernetes_deploy", "kubernetes_cluster")
    assert original.step_if_ready() and not original.last_update.rolled_back
    state = original.learner.state_dict()

    copy_ = learner_of(mode, seed=1, **options)  # another initialisation: everything must come from the state
    copy_.learner.load_state_dict(state)
    again = copy_.learner.state_dict()
    assert again.keys() == state.keys()
    for key in ("steps", "rng", "replay", "canaries", "taught_terms", "misheard"):
        assert again[key] == state[key], key
    assert all(torch.equal(again["adapter"][n], t) for n, t in state["adapter"].items())
    assert_same_optimizer(again["optimizer"], state["optimizer"])
    assert again["examples"].keys() == state["examples"].keys()

    for agent in (original, copy_):  # the same next update, from the same state
        teach(agent, captures, mode, "weather", "kubernetes_deploy")
        assert agent.step_if_ready() and agent.last_update.replayed == 1
    assert original.last_update.canary_before == copy_.last_update.canary_before
    assert all(torch.equal(p, copy_.learner.trainable[n]) for n, p in original.learner.trainable.items())
    assert_same_optimizer(optimizer_state(original), optimizer_state(copy_))
