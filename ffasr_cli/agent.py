"""``ASRAgent``: transcribe, cache what decoding computed, learn from corrections without the audio.

The whole online-learning surface is four calls::

    text, cache_id = agent.infer(audio)                       # decode + keep what an update needs
    loss = agent.compute_loss_from_cache(cache_id, fixed)     # loss from the cache; backward done
    agent.step_if_ready()                                     # an update after N corrections
    agent.accept(cache_id)                                    # (optional) the transcript was right

The agent wires three parts around one model: a ``Reader`` (decoding, ``reader.py``), a
``Learner`` (updates and their state, ``learner.py``) and the cache between them. Files and the
store are the ``Session``'s (``session.py``); the agent holds what is in memory.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import whisper

from .cache import InteractionCache
from .config import Config, load_config
from .corrections import check_correction
from .errors import ConfigError, FfasrError
from .learner import Example, Learner, UpdateResult
from .models import load_model, resolve_device
from .modes import MODES
from .reader import Reader

__all__ = ["ASRAgent", "Example", "UpdateResult"]


class ASRAgent:
    def __init__(
        self,
        model_name: str | None = None,
        accumulation_steps: int | None = None,
        *,
        mode: str | None = None,
        device: str | None = None,
        config: str | Path | dict | Config | None = None,
        seed: int = 0,
        **training_options,
    ):
        """``model_name`` (default ``tiny.en``) and ``accumulation_steps`` (default 4) override the
        config, as do ``mode``, ``device`` and any ``training:``/``decoding:`` key given by name."""
        self.config = load_config(
            config, model=model_name, accumulation_steps=accumulation_steps, mode=mode, device=device, **training_options
        )
        self.device = resolve_device(self.config.device)
        language = self.config.decoding.language
        if language not in whisper.tokenizer.LANGUAGES and language.lower() not in whisper.tokenizer.TO_LANGUAGE_CODE:
            raise ConfigError(f"decoding.language {language[:40]!r} is not a language Whisper knows (en, de, fr, …; or English, German, …)")
        self.model = load_model(self.config.model, self.device)
        self.tokenizer = whisper.tokenizer.get_tokenizer(
            self.model.is_multilingual, num_languages=self.model.num_languages, language=self.config.decoding.language, task="transcribe"
        )
        t = self.config.training
        sot = tuple(self.tokenizer.sot_sequence_including_notimestamps)
        self.reader = Reader(self.model, self.tokenizer, self.config.decoding, self.device, getattr(torch, t.cache_dtype))
        self.mode = MODES[t.mode](self.model, t, sot, self.tokenizer.eot, encoder_bf16=self.reader.bf16)
        if t.mode == "logits" and self.config.decoding.beam_size:
            raise FfasrError("logits mode caches the greedy path: set decoding.beam_size to null")
        with torch.random.fork_rng(devices=[]):  # seeded adapter init, without touching the caller's RNG
            torch.manual_seed(seed)
            params = self.mode.install()
        self.cache = InteractionCache(t.max_cache_size)
        self.learner = Learner(self.mode, self.tokenizer, t, self.cache, params, seed)

    # ---------------------------------------------------------------- the four calls

    def infer(self, audio: str | Path | np.ndarray, cache_logits: bool = True):
        """Transcribe ``audio`` (a path, or 16 kHz float32 samples).

        With ``cache_logits`` returns ``(text, cache_id)`` and keeps what the update mode needs
        (``cache_id`` is None when nothing was said); without, returns the text alone.
        """
        captures = self.reader.transcribe(audio, self.mode.keeps if cache_logits else None)
        text = " ".join(c.text for c in captures).strip()
        if not cache_logits:
            return text
        if not text:
            return text, None
        return text, self.cache.add(captures).cache_id

    def compute_loss_from_cache(self, cache_id: str, ground_truth_text: str, *, confirms: bool = False) -> torch.Tensor:
        """Loss of ``ground_truth_text`` from the cache (no audio), with ``loss / N`` backpropagated.

        ``confirms``: the user accepted the transcript (it writes a learned term); it rides along
        with the next batch instead of counting as one of its ``accumulation_steps`` corrections.
        Raises ``CorrectionRejected`` for a label that is not a correction of what was heard.
        """
        loss = self.learner.learn(self.example(cache_id, ground_truth_text, confirms))
        self.publish()
        return torch.tensor(loss)

    def example(self, cache_id: str, label: str, confirms: bool = False) -> Example:
        """``label`` checked against what was heard and tokenized; ``CorrectionRejected`` when it is not a correction."""
        entry = self.learner.entry(cache_id)
        check_correction(entry.text, label, min_similarity=self.config.training.min_similarity)
        return self.learner.example(entry, label, confirms)

    def step_if_ready(self, force: bool = False) -> bool:
        """After ``accumulation_steps`` corrections (or anything pending, with ``force``), run one update; True when it ran."""
        stepped = self.learner.step_if_ready(force)
        self.publish()
        return stepped

    def publish(self) -> None:
        """Let the reader decode with what the learner has taught now (``Reader.adopt``)."""
        self.reader.adopt(self.learner)

    def accept(self, cache_id: str) -> bool:
        """The transcript was right: keep it as a canary (checked before and after each update); True if kept."""
        kept = self.learner.keep_canary(self.learner.entry(cache_id))
        self.cache.discard([cache_id])
        return kept

    # ---------------------------------------------------------------- what callers read

    @property
    def last_update(self) -> UpdateResult | None:
        return self.learner.last_update

    def identity(self) -> dict:
        """What an adapter file must match to be loaded into this agent."""
        t = self.config.training
        if t.mode == "logits":
            adapter = f"head/r{t.head_rank}"
        else:
            adapter = f"lora/r{t.lora_rank}/{','.join(t.lora_targets)}" + ("+encoder" if t.mode == "full" and not t.freeze_encoder else "")
        return {"model": self.config.model, "dims": vars(self.model.dims), "adapter": adapter}

    def attempt(self, cache_id: str) -> str | None:
        """What the adapter itself wrote for a cached interaction, if the term guard showed other words."""
        entry = self.cache.get(cache_id)
        return None if entry is None else self.reader.attempt(entry)

    def restore_pending(self, entry, label: str, confirms: bool = False) -> None:
        """Put a correction (or confirmed sentence) saved before a restart back into the cache and the accumulation."""
        self.cache.add(entry.windows, cache_id=entry.cache_id)
        self.compute_loss_from_cache(entry.cache_id, label, confirms=confirms)
