"""Decode one 30 s window with whisper's own ``DecodingTask``, keeping what an update will need.

Nothing is computed twice: the encoder output and the decoder's final hidden states are taken
from the decoding pass itself (a subclass hook on ``_get_audio_features`` and a forward hook on
the decoder's final layer norm), not from a second forward pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import whisper
from whisper.decoding import DecodingOptions, DecodingResult, DecodingTask
from whisper.model import Whisper

from .lora import HeadAdapter

# What an update mode can ask to keep.
HIDDEN, AUDIO_FEATURES, MEL = "hidden", "audio_features", "mel"


@dataclass(frozen=True)
class WindowCapture:
    """One decoded window and what was kept from decoding it."""

    tokens: tuple[int, ...]  # hypothesis text tokens (no start-of-transcript, no end-of-text)
    text: str
    no_speech_prob: float
    avg_logprob: float
    compression_ratio: float  # gzip ratio of the text: high means a repetition loop
    hidden: torch.Tensor | None = None  # [len(tokens)+1, d]: the state each output token was read from
    audio_features: torch.Tensor | None = None  # [n_audio_ctx, d]: the encoder output
    mel: torch.Tensor | None = None  # [n_mels, 3000]: the input, for the full-recompute baseline

    @property
    def nbytes(self) -> int:
        tensors = (self.hidden, self.audio_features, self.mel)
        return sum(t.numel() * t.element_size() for t in tensors if t is not None)


def final_norm(model: Whisper) -> torch.nn.Module:
    """The layer norm whose output the output projection reads (inside a head adapter if any)."""
    ln = model.decoder.ln
    return ln.ln if isinstance(ln, HeadAdapter) else ln


class CapturingTask(DecodingTask):
    """whisper's ``DecodingTask``, keeping the encoder output and/or per-step hidden states."""

    def __init__(self, model: Whisper, options: DecodingOptions, keep: str | None, dtype: torch.dtype):
        super().__init__(model, options)
        self.keep, self.dtype = keep, dtype
        self.kept: dict[str, torch.Tensor] = {}

    def _get_audio_features(self, mel: torch.Tensor) -> torch.Tensor:
        features = super()._get_audio_features(mel)
        if self.keep == AUDIO_FEATURES:
            self.kept[AUDIO_FEATURES] = features[0].to(self.dtype)
        return features

    def _main_loop(self, audio_features: torch.Tensor, tokens: torch.Tensor):
        if self.keep != HIDDEN:
            return super()._main_loop(audio_features, tokens)
        steps: list[torch.Tensor] = []
        # With the kv-cache each call sees only new positions; the last one predicts the next token.
        hook = final_norm(self.model).register_forward_hook(lambda _m, _i, out: steps.append(out[0, -1].to(self.dtype)))
        try:
            return super()._main_loop(audio_features, tokens)
        finally:
            hook.remove()
            self.kept[HIDDEN] = torch.stack(steps) if steps else None


def decode_window(
    model: Whisper, audio: np.ndarray, options: DecodingOptions, keep: str | None, dtype: torch.dtype
) -> WindowCapture:
    """Decode ≤30 s of 16 kHz audio; ``keep`` names what to keep (HIDDEN, AUDIO_FEATURES, MEL or None)."""
    mel = whisper.log_mel_spectrogram(whisper.pad_or_trim(torch.from_numpy(audio)).to(model.device))
    task = CapturingTask(model, options, keep, dtype)
    result: DecodingResult = task.run(mel.unsqueeze(0))[0]
    hidden = task.kept.get(HIDDEN)
    if hidden is not None:
        hidden = hidden[: len(result.tokens) + 1]  # drop states after end-of-text, if any
    return WindowCapture(
        tokens=tuple(result.tokens),
        text=result.text,
        no_speech_prob=float(result.no_speech_prob),
        avg_logprob=float(result.avg_logprob),
        compression_ratio=float(result.compression_ratio),
        hidden=hidden,
        audio_features=task.kept.get(AUDIO_FEATURES),
        mel=mel.to(dtype) if keep == MEL else None,
    )
