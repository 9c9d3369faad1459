"""The engine, end to end on the real offline tiny.en and real clips: no mocks.

Decoding is shared through the session ``captures`` fixture (see conftest); every test that
trains builds its own agent.
"""

from __future__ import annotations

import logging
import math
from dataclasses import replace

import numpy as np
import pytest
import soundfile
import torch
from conftest import TEXTS, add_entry, clip, same_weights, trainable, weights

from ffasr_cli import ASRAgent
from ffasr_cli.audio import SAMPLE_RATE, load_audio
from ffasr_cli.capture import bf16_available
from ffasr_cli.errors import CorrectionRejected, FfasrError

DEPLOY = TEXTS["kubernetes_deploy"]


def tokens_text(agent, tokens) -> str:
    assert tokens[-1] == agent.tokenizer.eot
    return agent.tokenizer.decode(list(tokens[:-1])).strip()


# --- the original write-up's example, as written ------------------------------------------------


def test_seed_example_as_written(captures):
    audio_t0 = str(clip("kubernetes_deploy"))
    audio_t1, rate = soundfile.read(clip("kubernetes_deploy"), dtype="float32")
    assert rate == 16_000 and audio_t1.dtype == np.float32

    from ffasr_cli import ASRAgent

    agent = ASRAgent(model_name="tiny.en", accumulation_steps=4)
    text_t0, cache_id = agent.infer(audio_t0, cache_logits=True)  # audio: path or float32 16 kHz array
    text_t1 = agent.infer(audio_t1, cache_logits=False)  # returns just the text
    loss = agent.compute_loss_from_cache(cache_id=cache_id, ground_truth_text=text_t1)  # a tensor; backward done
    stepped = agent.step_if_ready()  # steps after N; returns whether it stepped

    assert isinstance(text_t0, str) and "Deploy the new service" in text_t0
    assert text_t1 == text_t0  # a path and the same samples as an array decode alike
    assert isinstance(cache_id, str) and cache_id in agent.cache
    assert isinstance(loss, torch.Tensor) and loss.ndim == 0 and math.isfinite(loss.item()) and loss.item() > 0
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in trainable(agent).values())
    assert stepped is False and len(agent.learner.pending) == 1

    # three more corrections (decoded once per session) make four: the update runs
    for name in ("kubernetes_cluster", "kubernetes_dashboard", "weather"):
        cid = add_entry(agent, captures.windows("encoder", name))
        agent.compute_loss_from_cache(cid, TEXTS[name])
        assert agent.step_if_ready() is (name == "weather")
    assert agent.last_update.step == 1 and cache_id in agent.last_update.corrections


# --- the converted offline model transcribes ----------------------------------------------------


def test_offline_tiny_en_transcribes_librivox(captures):
    from whisper.normalizers import EnglishTextNormalizer

    normalize = EnglishTextNormalizer()
    agent = captures.agent("encoder", "float16")
    assert agent.config.model == "tiny.en"
    amiable = agent.infer(clip("librivox_amiable"), cache_logits=False)
    assert normalize(amiable) == normalize(TEXTS["librivox_amiable"])
    # tiny.en itself mishears "ill disposed" on this clip ("old-sposed"); the rest is exact
    ill = normalize(agent.infer(clip("librivox_ill_disposed"), cache_logits=False)).split()
    expected = normalize(TEXTS["librivox_ill_disposed"]).split()
    assert ill[:4] == expected[:4] and ill[-2:] == expected[-2:]


# --- encoder mode is exact: same gradients as re-running the audio ------------------------------


ALL_DECODER_LINEARS = ("attn.query", "attn.key", "attn.value", "attn.out", "cross_attn.query", "cross_attn.key",
                       "cross_attn.value", "cross_attn.out", "mlp.0", "mlp.2")  # fmt: skip


@pytest.mark.parametrize(
    ("lora_targets", "kl_weight", "inner_steps"),
    [(None, 0.0, 1), (ALL_DECODER_LINEARS, 0.0, 1), (None, 0.5, 2)],
    ids=["default: cross K/V reused", "all linears", "KL: base logits reused across inner steps"],
)
def test_encoder_mode_gradients_equal_full_mode_with_frozen_encoder(captures, lora_targets, kl_weight, inner_steps):
    # On the CPU in float32 the two are bitwise equal (the cached encoder output is the one
    # decoding computed, and full mode recomputes the very same thing from the cached mel).
    # By default encoder mode projects the cross-attention keys/values of a window once and
    # reuses them; with LoRA on those projections it recomputes them each pass: both exact.
    # With KL, encoder mode computes the base model's logits once per update, full mode every pass.
    options = dict(accumulation_steps=1, inner_steps=inner_steps, kl_weight=kl_weight, cache_dtype="float32", seed=7, lora_targets=lora_targets)
    encoder = ASRAgent(mode="encoder", **options)
    full = ASRAgent(mode="full", **options)
    enc_windows = captures.windows("encoder", "kubernetes_deploy", "float32")
    full_windows = captures.windows("full", "kubernetes_deploy", "float32")
    assert [w.tokens for w in enc_windows] == [w.tokens for w in full_windows]
    assert enc_windows[0].mel is None and enc_windows[0].audio_features is not None
    assert full_windows[0].audio_features is None and full_windows[0].mel is not None

    enc_params, full_params = trainable(encoder), trainable(full)
    assert enc_params.keys() == full_params.keys() and enc_params
    assert not any(n.startswith("encoder.") for n in full_params)  # frozen
    assert all(torch.equal(enc_params[n], full_params[n]) for n in enc_params)  # seeded LoRA init

    exact = encoder.device == "cpu" == full.device and captures.agent("encoder", "float32").device == "cpu"

    def compare(expect_a_zero: bool) -> None:
        enc_loss = encoder.compute_loss_from_cache(add_entry(encoder, enc_windows), DEPLOY)
        full_loss = full.compute_loss_from_cache(add_entry(full, full_windows), DEPLOY)
        torch.testing.assert_close(enc_loss, full_loss, rtol=1e-5, atol=1e-6)
        nonzero = {"A": 0, "B": 0}
        for name, p in enc_params.items():
            q = full_params[name]
            assert p.grad is not None and q.grad is not None, name
            torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-6, msg=name)
            if exact:
                assert torch.equal(p.grad, q.grad), name
            nonzero[name[-1]] += bool(p.grad.abs().max() > 0)
        assert nonzero["B"] == sum(n.endswith("B") for n in enc_params)
        if expect_a_zero:  # B starts at zero, so nothing reaches A before the first update
            assert nonzero["A"] == 0
        else:
            assert nonzero["A"] == sum(n.endswith("A") for n in enc_params)

    compare(expect_a_zero=True)
    if not exact:
        # On a GPU full mode's fp16 encoder rounds a little differently from decoding's, and
        # Adam's first step turns such differences in near-zero gradients into whole steps:
        # from here on only the CPU is exact.
        return
    assert encoder.step_if_ready() and full.step_if_ready()
    for name, p in enc_params.items():
        torch.testing.assert_close(p, full_params[name], rtol=1e-4, atol=1e-6, msg=name)
    compare(expect_a_zero=False)  # after one update every LoRA gradient is live, and still equal


# --- each mode learns its correction ------------------------------------------------------------


@pytest.mark.parametrize("mode", ["logits", "encoder", "full"])
def test_each_mode_learns_the_correction(captures, mode):
    dtype = "float16" if mode == "logits" else "float32"
    # logits mode trains a small head adapter: it needs a larger rate to learn in two updates
    options = {"learning_rate": 3e-3} if mode == "logits" else {}
    agent = ASRAgent(mode=mode, accumulation_steps=1, cache_dtype=dtype, **options)
    windows = captures.windows(mode, "kubernetes_deploy", dtype)
    heard = " ".join(w.text for w in windows)
    assert "Kubernetes" not in heard  # tiny.en does not know the word

    losses = []
    for _ in range(2):
        cache_id = add_entry(agent, windows)
        losses.append(agent.compute_loss_from_cache(cache_id, DEPLOY).item())
        assert agent.step_if_ready() and not agent.last_update.rolled_back
    losses.append(agent.compute_loss_from_cache(add_entry(agent, windows), DEPLOY).item())
    assert losses[2] < losses[1] < losses[0], losses
    assert agent.learner.steps == 2
    assert agent.infer(clip("kubernetes_deploy"), cache_logits=False) == DEPLOY


def test_decoding_uses_the_merged_lora_weight_and_follows_every_change_to_it():
    from whisper.model import Linear

    from ffasr_cli.lora import LoRALinear

    torch.manual_seed(0)
    layer = LoRALinear(Linear(16, 8), rank=4, alpha=8.0)
    x = torch.randn(3, 16)
    with torch.no_grad():
        assert torch.equal(layer(x), layer.base(x))  # B starts at zero: the merged weight is W itself
        layer.lora.B.normal_()  # as an optimizer step writes it: in place

        def low_rank_path():
            return layer.base(x) + layer.lora(x)

        torch.testing.assert_close(layer(x), low_rank_path())
        layer.lora.A.mul_(2)
        torch.testing.assert_close(layer(x), low_rank_path())
    layer(x).sum().backward()  # an update takes the low-rank path: gradients reach A and B
    assert layer.lora.A.grad.abs().sum() > 0 and layer.lora.B.grad.abs().sum() > 0


def test_adapter_rows_adapt_only_the_first_rows_of_a_batch():
    from torch import nn
    from whisper.model import Linear

    from ffasr_cli.lora import HeadAdapter, LoRALinear, adapter_rows, disabled_adapters

    torch.manual_seed(0)
    layer, head = LoRALinear(Linear(16, 8), rank=4, alpha=8.0), HeadAdapter(nn.LayerNorm(16), rank=4, alpha=8.0)
    x = torch.randn(3, 5, 16)  # three rows of a decoding batch
    with torch.no_grad():
        for adapter in (layer.lora, head.lora):
            adapter.B.normal_()
        for module, base in ((layer, layer.base), (head, head.ln)):
            adapted = module(x)
            with adapter_rows(module, 1):
                mixed = module(x)
            with disabled_adapters(module):
                torch.testing.assert_close(module(x), base(x))
            torch.testing.assert_close(mixed[:1], adapted[:1])
            torch.testing.assert_close(mixed[1:], base(x[1:]))
            assert not torch.allclose(adapted[1:], base(x[1:]))  # the adapter does change those rows
            torch.testing.assert_close(module(x), adapted)  # leaving the context adapts every row again
            module.lora.A.mul_(-1)  # as an update writes it: in place
            with adapter_rows(module, 1):
                torch.testing.assert_close(module(x)[:1], module(x[:1]))  # the batch follows the change


@pytest.mark.parametrize("int8", [False, True], ids=["fp32", "int8"])
@pytest.mark.parametrize("mode", ["logits", "encoder"])
def test_the_guards_two_readings_in_one_batch_equal_two_decoder_passes(captures, mode, int8):
    from ffasr_cli.capture import Window, encode

    options = {"learning_rate": 3e-3} if mode == "logits" else {}
    agent = ASRAgent(mode=mode, accumulation_steps=1, cache_dtype="float32", **options)
    for _ in range(2):
        agent.compute_loss_from_cache(add_entry(agent, captures.windows(mode, "kubernetes_deploy", "float32")), DEPLOY)
        assert agent.step_if_ready()
    decoding, texts = agent.reader.options(None), {}
    for name in ("kubernetes_deploy", "weather"):
        encoded = encode(agent.model, load_audio(clip(name)), fp16=False)
        batched = Window(agent.model, *encoded, agent.reader.cache_dtype, int8).decode_with_base(decoding, agent.mode.keeps)
        apart = Window(agent.model, *encoded, agent.reader.cache_dtype, int8).decode_apart(decoding, agent.mode.keeps)  # its own keys and values
        for one_pass, alone in zip(batched, apart):
            assert one_pass.tokens == alone.tokens and one_pass.text == alone.text
            torch.testing.assert_close(one_pass.token_logprobs, alone.token_logprobs, rtol=0, atol=1e-4)
            for kept in ("hidden", "audio_features"):
                if getattr(alone, kept) is not None:
                    torch.testing.assert_close(getattr(one_pass, kept), getattr(alone, kept), rtol=0, atol=1e-3)
        texts[name] = tuple(reading.text for reading in batched)
    adapted_text, base_text = texts["kubernetes_deploy"]
    assert adapted_text == DEPLOY and "Kubernetes" not in base_text  # the two rows are two models


def test_the_term_guard_shows_the_base_words_where_no_taught_term_is_written(captures):
    agent = ASRAgent(accumulation_steps=1)
    windows = captures.windows("encoder", "kubernetes_deploy")
    for _ in range(2):
        agent.compute_loss_from_cache(add_entry(agent, windows), DEPLOY)
        assert agent.step_if_ready()
    assert agent.learner.taught_terms == {"Kubernetes"}
    assert agent.infer(clip("kubernetes_deploy"), cache_logits=False) == DEPLOY

    agent.learner.vocabulary_is([])  # as after `ffasr vocab remove Kubernetes`: the adapter still writes it...
    agent.publish()
    base = " ".join(w.text for w in windows).strip()
    assert "Kubernetes" not in base
    assert agent.infer(clip("kubernetes_deploy"), cache_logits=False) == base  # ...but the guard shows the base words
    agent.reader.config = replace(agent.reader.config, term_guard=False)
    assert agent.infer(clip("kubernetes_deploy"), cache_logits=False) == DEPLOY


@pytest.mark.parametrize("term_guard", [True, False], ids=["guarded", "unguarded"])
def test_an_adapted_reading_that_loops_gives_the_base_models_reading(captures, term_guard):
    agent = ASRAgent(accumulation_steps=1, term_guard=term_guard)
    windows = captures.windows("encoder", "kubernetes_deploy")
    agent.compute_loss_from_cache(add_entry(agent, windows), DEPLOY)
    assert agent.step_if_ready() and agent.infer(clip("kubernetes_deploy"), cache_logits=False) == DEPLOY
    agent.reader.config = replace(agent.reader.config, compression_ratio_threshold=0.01)  # every reading counts as a loop
    text, cache_id = agent.infer(clip("kubernetes_deploy"))
    assert text == " ".join(w.text for w in windows).strip()  # the base model's words, not the adapter's
    assert agent.cache.get(cache_id).windows[0].tokens == windows[0].tokens  # and the cache holds the base reading


def test_greedy_decoding_records_each_tokens_log_probability(captures):
    from ffasr_cli.capture import scored_tokens

    agent = captures.agent("encoder", "float32")
    (window,) = captures.windows("encoder", "kubernetes_deploy", "float32")
    assert len(window.token_logprobs) == len(window.tokens) and all(lp <= 0 for lp in window.token_logprobs)
    # the same log-probabilities from one teacher-forced pass (whisper's token filters aside)
    picked = scored_tokens(agent.model, agent.mode.sot_sequence, window.tokens, window.audio_features[None])
    torch.testing.assert_close(torch.tensor(window.token_logprobs), torch.tensor(picked), rtol=0, atol=0.05)


def test_beam_search_records_each_tokens_log_probability_too(captures):
    from ffasr_cli.capture import Window, encode

    agent = captures.agent("encoder", "float32")
    (greedy,) = captures.windows("encoder", "kubernetes_deploy", "float32")
    window = Window(agent.model, *encode(agent.model, load_audio(clip("kubernetes_deploy")), fp16=False), agent.reader.cache_dtype)
    beam = window.decode(replace(agent.reader.options(None), beam_size=5), None)
    assert beam.tokens == greedy.tokens  # a clear clip: both searches find the same words...
    # ...and the term guard reads the same confidence for them (whisper's token filters aside)
    torch.testing.assert_close(torch.tensor(beam.token_logprobs), torch.tensor(greedy.token_logprobs), rtol=0, atol=0.05)


# --- accumulation and the cache ------------------------------------------------------------------


def test_accumulation_steps_after_n_and_clears(captures):
    agent = ASRAgent(accumulation_steps=3, inner_steps=1)
    names = ["kubernetes_deploy", "kubernetes_cluster", "kubernetes_dashboard"]
    ids, losses = [], []
    for i, name in enumerate(names, 1):
        ids.append(add_entry(agent, captures.windows("encoder", name)))
        losses.append(agent.compute_loss_from_cache(ids[-1], TEXTS[name]).item())
        assert len(agent.learner.pending) == i and agent.learner.accumulated == i
        if i < 3:
            assert agent.step_if_ready() is False
            assert agent.last_update is None
            assert any(p.grad is not None for p in trainable(agent).values())
    before = weights(agent)
    assert agent.step_if_ready() is True

    assert not same_weights(agent, before)
    assert all(p.grad is None or not p.grad.any() for p in trainable(agent).values())
    assert all(cid not in agent.cache for cid in ids) and len(agent.cache) == 0
    assert agent.learner.pending == [] and agent.learner.accumulated == 0
    update = agent.last_update
    assert update.step == 1 == agent.learner.steps
    assert update.corrections == tuple(ids)
    assert update.loss == pytest.approx(float(np.mean(losses)))
    assert update.replayed == 0 and update.rolled_back is False
    assert update.canary_before is None and update.canary_after is None
    assert 0 < update.seconds < 600
    assert [e.cache_id for e in agent.learner.replay] == ids
    assert agent.step_if_ready() is False  # nothing pending

    # a used cache id is stale
    with pytest.raises(FfasrError, match="no cached interaction"):
        agent.compute_loss_from_cache(ids[0], DEPLOY)


def test_confirmed_sentences_ride_along_with_corrections(captures):
    """Accepted transcripts learned from join the batch; corrections set the pace (or twice as many in all)."""
    agent = ASRAgent(accumulation_steps=3, inner_steps=1)

    def teach(name: str, label: str | None = None) -> None:
        cache_id = add_entry(agent, captures.windows("encoder", name))
        confirms = label is None  # the user accepted the transcript itself
        agent.compute_loss_from_cache(cache_id, label or agent.cache.get(cache_id).text, confirms=confirms)
        assert agent.learner.pending[-1].confirms is confirms

    teach("weather")
    teach("librivox_amiable")
    assert not agent.step_if_ready() and agent.learner.until_update() == (3, 4)  # 3 corrections, or 4 of either kind
    teach("kubernetes_deploy", TEXTS["kubernetes_deploy"])
    teach("kubernetes_cluster", TEXTS["kubernetes_cluster"])
    assert not agent.step_if_ready()  # 2 corrections of 3, 4 pending of 6
    assert agent.learner.until_update() == (1, 2)
    teach("librivox_ill_disposed")
    assert not agent.step_if_ready() and agent.learner.until_update() == (1, 1)
    teach("kubernetes_dashboard", TEXTS["kubernetes_dashboard"])
    assert agent.step_if_ready() and len(agent.last_update.corrections) == 6


def test_cache_evicts_oldest_with_warning_and_counts_bytes(caplog):
    agent = ASRAgent(accumulation_steps=2, max_cache_size=2)
    ids = []
    with caplog.at_level(logging.WARNING, logger="ffasr_cli.cache"):
        for name in ("kubernetes_deploy", "weather", "librivox_amiable"):
            text, cache_id = agent.infer(clip(name))
            ids.append(cache_id)
    assert len(set(ids)) == 3
    assert ids[0] not in agent.cache and ids[1] in agent.cache and ids[2] in agent.cache
    assert len(agent.cache) == 2 and agent.cache.evicted == 1
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and ids[0] in r.getMessage()]
    assert len(warnings) == 1 and "evicted" in warnings[0].getMessage()
    # encoder mode keeps one encoder output per window: 1500 x 384 float16
    entries = [agent.cache.get(i) for i in ids[1:]]
    assert all(e.nbytes == 1500 * 384 * 2 for e in entries)
    assert agent.cache.nbytes == sum(e.nbytes for e in entries)
    with pytest.raises(FfasrError, match="evicted"):
        agent.compute_loss_from_cache(ids[0], DEPLOY)


def test_config_refuses_cache_smaller_than_accumulation():
    from ffasr_cli.errors import ConfigError

    with pytest.raises(ConfigError, match="max_cache_size"):
        ASRAgent(accumulation_steps=3, max_cache_size=2)


# --- rejection -----------------------------------------------------------------------------------


def test_unrelated_label_is_rejected(captures):
    agent = captures.agent("encoder", "float16")
    cache_id = add_entry(agent, captures.windows("encoder", "kubernetes_deploy"))
    try:
        with pytest.raises(CorrectionRejected):
            agent.compute_loss_from_cache(cache_id, "He might even have been made amiable himself.")
        with pytest.raises(CorrectionRejected):
            agent.compute_loss_from_cache(cache_id, "   ")
        assert agent.learner.pending == [] and cache_id in agent.cache
    finally:
        agent.cache.discard([cache_id])


def test_silence_and_low_noise_give_no_text_and_no_entry(captures):
    agent = captures.agent("encoder", "float16")
    size = len(agent.cache)
    rng = np.random.default_rng(0)
    silence = np.zeros(3 * SAMPLE_RATE, np.float32)
    quiet_noise = (rng.standard_normal(3 * SAMPLE_RATE) * 0.002).astype(np.float32)  # about -54 dBFS
    noise = (rng.standard_normal(3 * SAMPLE_RATE) * 0.01).astype(np.float32)  # -40 dBFS: decoded
    for audio in (silence, quiet_noise, noise):
        assert agent.infer(audio) == ("", None)
        assert agent.infer(audio, cache_logits=False) == ""
    assert len(agent.cache) == size


def test_unknown_cache_id_raises(captures):
    agent = captures.agent("encoder", "float16")
    with pytest.raises(FfasrError, match="no cached interaction 'nope'"):
        agent.compute_loss_from_cache("nope", DEPLOY)
    with pytest.raises(FfasrError):
        agent.accept("nope")


# --- safety: canary rollback and Ctrl-C -----------------------------------------------------------


def test_poisoned_update_is_rolled_back_by_the_canary(captures):
    agent = ASRAgent(accumulation_steps=2, learning_rate=1.0)
    canary = add_entry(agent, captures.windows("encoder", "weather"))
    agent.accept(canary)
    assert len(agent.learner.canaries) == 1 and canary not in agent.cache
    poisoned = {
        "kubernetes_deploy": "Deploy the new service to Cuba Nates tomorrow.",
        "kubernetes_cluster": "Our Qberneats cluster ran out of money again.",
    }
    for name, label in poisoned.items():
        agent.compute_loss_from_cache(add_entry(agent, captures.windows("encoder", name)), label)
    before = weights(agent)
    assert agent.step_if_ready() is True

    update = agent.last_update
    assert update.rolled_back is True
    assert update.canary_after - update.canary_before > agent.config.training.canary_tolerance
    assert same_weights(agent, before)
    assert update.step == 0 == agent.learner.steps
    assert agent.learner.pending == [] and len(agent.learner.replay) == 0  # a rolled-back batch is not replayed
    assert all(p.grad is None for p in trainable(agent).values())


def test_ctrl_c_mid_update_restores_weights_and_keeps_pending(captures, monkeypatch):
    agent = ASRAgent(accumulation_steps=2, inner_steps=3)
    ids = []
    for name in ("kubernetes_deploy", "kubernetes_cluster"):
        ids.append(add_entry(agent, captures.windows("encoder", name)))
        agent.compute_loss_from_cache(ids[-1], TEXTS[name])
    before = weights(agent)

    real_step = agent.learner.optimizer.step
    calls = []

    def interrupted_step(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_step(*args, **kwargs)

    monkeypatch.setattr(agent.learner.optimizer, "step", interrupted_step)
    with pytest.raises(KeyboardInterrupt):
        agent.step_if_ready()
    assert len(calls) == 2
    assert same_weights(agent, before)  # the first inner step was undone too
    assert not agent.learner.optimizer.state  # and the optimizer's moments
    assert [e.cache_id for e in agent.learner.pending] == ids
    assert all(cid in agent.cache for cid in ids)
    assert agent.learner.steps == 0 and agent.last_update is None

    assert agent.step_if_ready() is True  # gradients are recomputed from the cache
    assert len(calls) == 2 + 3
    assert not same_weights(agent, before)
    assert agent.learner.pending == [] and agent.last_update.step == 1
    assert agent.last_update.corrections == tuple(ids)


# --- long audio ----------------------------------------------------------------------------------


def test_long_audio_three_windows_one_entry_and_training():
    parts = [(1, "weather"), (31, "librivox_amiable"), (61, "kubernetes_cluster")]
    audio = np.zeros(65 * SAMPLE_RATE, np.float32)
    for start, name in parts:
        samples = load_audio(clip(name))
        audio[start * SAMPLE_RATE : start * SAMPLE_RATE + len(samples)] = samples

    agent = ASRAgent(accumulation_steps=1, inner_steps=1)
    text, cache_id = agent.infer(audio)
    entry = agent.cache.get(cache_id)
    assert len(agent.cache) == 1 and len(entry.windows) == 3
    lowered = [w.text.lower() for w in entry.windows]
    assert "weather" in lowered[0] and "amiable" in lowered[1] and "cluster" in lowered[2]
    assert all(word in text.lower() for word in ("weather", "amiable", "cluster"))

    label = " ".join([entry.windows[0].text, entry.windows[1].text, TEXTS["kubernetes_cluster"]])
    loss = agent.compute_loss_from_cache(cache_id, label)
    assert math.isfinite(loss.item())
    targets = agent.learner.pending[0].targets
    assert len(targets) == 3  # the label was shared out over the windows it was heard in
    assert [tokens_text(agent, t.tokens) for t in targets] == [
        entry.windows[0].text.strip(),
        entry.windows[1].text.strip(),
        TEXTS["kubernetes_cluster"],
    ]
    before = weights(agent)
    assert agent.step_if_ready() is True
    assert not same_weights(agent, before) and cache_id not in agent.cache


# --- decoding cost: what the readings of a window share ------------------------------------------


def test_decoding_with_the_exact_projection_is_openai_whispers_own(captures):
    """``decoding.int8_projection: false``: the window's readings decode what whisper.decode does, token for token."""
    import whisper

    from ffasr_cli.capture import Window, encode

    agent = captures.agent("encoder", "float32")
    options = agent.reader.options(None)
    for name in ("kubernetes_deploy", "weather", "librivox_amiable"):
        mel, features = encode(agent.model, load_audio(clip(name)), fp16=False)
        ours = Window(agent.model, mel, features, torch.float32, int8=False).decode(options, None)
        theirs = whisper.decode(agent.model, mel, options)
        assert list(ours.tokens) == theirs.tokens and ours.text == theirs.text
        assert ours.avg_logprob == pytest.approx(theirs.avg_logprob, abs=1e-5)
        assert ours.no_speech_prob == pytest.approx(theirs.no_speech_prob, abs=1e-5)


@pytest.mark.skipif(not bf16_available(torch.device("cpu")), reason="this CPU has no AMX: the encoder stays in fp32")
def test_the_encoder_in_bf16_reads_what_it_reads_in_fp32(captures):
    """``decoding.bf16_encoder``: on a CPU with AMX the reader encodes in bf16, and each clip's
    encoder output moves by a few percent of its size, not enough to change a transcript."""
    from ffasr_cli.capture import Window, encode

    agent = captures.agent("encoder", "float32")
    assert agent.reader.bf16
    options = agent.reader.options(None)
    for name in TEXTS:
        audio = load_audio(clip(name))
        (mel, exact), (_, bf16) = (encode(agent.model, audio, fp16=False, bf16=b) for b in (False, True))
        assert bf16.dtype == torch.float32 and (bf16 - exact).norm() < 0.03 * exact.norm()
        texts = (Window(agent.model, mel, f, torch.float32, int8=False).decode(options, None).text for f in (exact, bf16))
        assert next(texts) == next(texts), name


def test_the_int8_projection_picks_the_same_tokens_with_nearly_the_same_log_probabilities(captures):
    from ffasr_cli.capture import Window, encode

    agent = captures.agent("encoder", "float32")
    options = agent.reader.options(f"Glossary: {', '.join(TEXTS)}.")  # a long prompt: the first pass projects only what is read
    for name in TEXTS:
        encoded = encode(agent.model, load_audio(clip(name)), fp16=False)
        exact, int8 = (Window(agent.model, *encoded, torch.float32, int8=q).decode(options, None) for q in (False, True))
        assert int8.tokens == exact.tokens
        torch.testing.assert_close(torch.tensor(int8.token_logprobs), torch.tensor(exact.token_logprobs), rtol=0, atol=0.05)
        assert int8.no_speech_prob == pytest.approx(exact.no_speech_prob, abs=0.01)


@pytest.mark.parametrize("int8", [False, True], ids=["fp32", "int8"])
def test_a_reading_decoded_from_where_it_departs_from_another_is_the_reading_decoded_in_full(captures, int8, monkeypatch):
    """``Window.decode_like``: the glossary's prompted reading, decoded from the first token where it
    leaves the base reading, is the prompted reading, whatever it is given to follow: the base reading,
    which it follows wholly or in part, one that goes on past where it ends, one with a wrong token
    that it leaves and rejoins, a first few tokens, none."""
    from ffasr_cli.capture import Window, encode

    agent = captures.agent("encoder", "float32")
    plain = agent.reader.options(None)
    passes = []
    agreement = Window.agreement
    monkeypatch.setattr(Window, "agreement", lambda self, task, tokens: passes.append(tokens) or agreement(self, task, tokens))
    for name, prompt in (("kubernetes_cluster", "Glossary: Kubernetes."), ("spelled_zbigniew", "Glossary: Zbigniew."), ("weather", "Glossary: Nguyen.")):
        window = Window(agent.model, *encode(agent.model, load_audio(clip(name)), fp16=False), torch.float32, int8)
        base, options = window.decode(plain, None), replace(plain, prompt=prompt)
        full = window.decode(options, None)
        wrong = full.tokens[:2] + (full.tokens[1],) + full.tokens[3:]
        for like in (base.tokens, full.tokens + base.tokens[:3], wrong, full.tokens[:2], ()):
            passes.clear()
            ours = window.decode_like(options, like)
            if like == wrong:
                assert [len(p) for p in passes] == [len(wrong), len(wrong) - 5]  # left at the third token, rejoined at the fifth
            assert ours.tokens == full.tokens and ours.text == full.text
            torch.testing.assert_close(torch.tensor(ours.token_logprobs), torch.tensor(full.token_logprobs), rtol=0, atol=1e-3)
            assert ours.avg_logprob == pytest.approx(full.avg_logprob, abs=1e-3)
            assert ours.no_speech_prob == pytest.approx(full.no_speech_prob, abs=1e-4)
            assert ours.compression_ratio == full.compression_ratio


def test_the_int8_copy_of_the_embedding_follows_its_changes():
    from ffasr_cli.projection import vocabulary_logits

    embedding = torch.nn.Parameter(torch.randn(1000, 64))
    hidden = torch.randn(3, 64)
    before = vocabulary_logits(hidden, embedding, int8=True)
    torch.testing.assert_close(before.argmax(-1), (hidden @ embedding.T).argmax(-1))
    with torch.no_grad():
        embedding.mul_(-1)  # an in-place change (an update, a restore) moves the version counter
    torch.testing.assert_close(vocabulary_logits(hidden, embedding, int8=True).argmax(-1), (hidden @ embedding.T).argmax(-1))


def test_the_glossary_reading_runs_only_where_it_could_add_a_term(captures, monkeypatch):
    from ffasr_cli.capture import Window

    agent = ASRAgent(accumulation_steps=1)
    agent.compute_loss_from_cache(add_entry(agent, captures.windows("encoder", "kubernetes_deploy")), DEPLOY)
    assert agent.step_if_ready()
    agent.reader.glossary = ["Kubernetes", "Xochitl"]
    prompted = []
    read = Window.decode_like
    monkeypatch.setattr(Window, "decode_like", lambda self, options, like: (prompted.append(options.prompt), read(self, options, like))[1])
    agent.reader.config = replace(agent.reader.config, base_sure_logprob=-1.0)  # the base model hears "nice" in weather.wav at -0.71
    assert agent.infer(clip("kubernetes_deploy"), cache_logits=False) == DEPLOY  # the weights write the name over "Cuba Nates": nothing to add
    assert agent.infer(clip("weather"), cache_logits=False)  # every word heard surely
    assert prompted == []
    agent.reader.config = replace(agent.reader.config, base_sure_logprob=0.0)  # no word is sure: every window is open
    agent.infer(clip("weather"), cache_logits=False)
    agent.infer(clip("kubernetes_deploy"), cache_logits=False)  # "Xochitl" is not written: it could still be found
    agent.reader.glossary = ["Kubernetes"]
    assert agent.infer(clip("kubernetes_deploy"), cache_logits=False) == DEPLOY  # every term of the prompt is written: nothing to find
    agent.infer(clip("weather"), cache_logits=False)
    assert prompted == ["Glossary: Kubernetes, Xochitl."] * 2 + ["Glossary: Kubernetes."]
