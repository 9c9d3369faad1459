"""Decode one 30 s window with whisper's own ``DecodingTask``, keeping what an update will need.

Nothing is computed twice: the encoder runs once per window (``encode``) and its output is given
to whisper's task, which skips its own encoder for input shaped like encoder output; the
decoder's final hidden states are taken from the decoding pass itself (a forward hook on the
decoder's final layer norm), not from a second forward pass. The same encoder output serves the
base model's reading for the term guard (``guard.py``), decoded in the same batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import whisper
from whisper.decoding import DecodingOptions, DecodingResult, DecodingTask, GreedyDecoder
from whisper.model import Whisper

from .lora import HeadAdapter, adapter_rows, disabled_adapters

# What an update mode can ask to keep.
HIDDEN, AUDIO_FEATURES, MEL = "hidden", "audio_features", "mel"


@dataclass(frozen=True)
class WindowCapture:
    """One decoded window and what was kept from decoding it."""

    tokens: tuple[int, ...]  # hypothesis text tokens (no start-of-transcript, no end-of-text)
    text: str  # what is shown: the tokens' text, or less of it where the term guard kept the base model's words
    no_speech_prob: float
    avg_logprob: float
    compression_ratio: float  # gzip ratio of the text: high means a repetition loop
    token_logprobs: tuple[float, ...] = ()  # log-probability of each token when it was picked
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


class RecordingGreedyDecoder(GreedyDecoder):
    """whisper's greedy decoder, also recording the log-probability of each token it picks."""

    def __init__(self, temperature: float, eot: int):
        super().__init__(temperature, eot)
        self.steps: list[torch.Tensor] = []  # per decoding step, [rows]

    def reset(self):
        self.steps = []

    def update(self, tokens: torch.Tensor, logits: torch.Tensor, sum_logprobs: torch.Tensor):
        before = sum_logprobs.clone()
        tokens, completed = super().update(tokens, logits, sum_logprobs)
        self.steps.append(sum_logprobs - before)
        return tokens, completed

    def logprobs(self, row: int) -> list[float]:
        return [float(step[row]) for step in self.steps]


class CapturingTask(DecodingTask):
    """whisper's ``DecodingTask``, keeping the decoder's per-step hidden states when asked."""

    def __init__(self, model: Whisper, options: DecodingOptions, keep: str | None, dtype: torch.dtype):
        super().__init__(model, options)
        self.keep, self.dtype = keep, dtype
        self.kept: dict[str, torch.Tensor] = {}
        if isinstance(self.decoder, GreedyDecoder):
            self.decoder = RecordingGreedyDecoder(options.temperature, self.tokenizer.eot)

    def _main_loop(self, audio_features: torch.Tensor, tokens: torch.Tensor):
        if self.keep != HIDDEN:
            return super()._main_loop(audio_features, tokens)
        steps: list[torch.Tensor] = []
        # With the kv-cache each call sees only new positions; the last one predicts the next token.
        hook = final_norm(self.model).register_forward_hook(lambda _m, _i, out: steps.append(out[:, -1].to(self.dtype)))
        try:
            return super()._main_loop(audio_features, tokens)
        finally:
            hook.remove()
            self.kept[HIDDEN] = torch.stack(steps, dim=1) if steps else None  # [rows, steps, d]


@torch.no_grad()
def encode(model: Whisper, audio: np.ndarray, fp16: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """The log-mel of ≤30 s of 16 kHz audio, and the encoder's output on it ([1, n_audio_ctx, d])."""
    mel = whisper.log_mel_spectrogram(whisper.pad_or_trim(torch.from_numpy(audio)).to(model.device))
    return mel, model.encoder(mel.unsqueeze(0).half() if fp16 else mel.unsqueeze(0))


def decode_window(
    model: Whisper, mel: torch.Tensor, features: torch.Tensor, options: DecodingOptions, keep: str | None, dtype: torch.dtype
) -> WindowCapture:
    """Decode one window from its encoder output; ``keep`` names what to keep (HIDDEN, AUDIO_FEATURES, MEL or None)."""
    task = CapturingTask(model, options, keep, dtype)
    return _capture(task, task.run(features)[0], 0, mel, features)


def decode_with_base(
    model: Whisper, mel: torch.Tensor, features: torch.Tensor, options: DecodingOptions, keep: str | None, dtype: torch.dtype
) -> tuple[WindowCapture, WindowCapture]:
    """The adapted model's and the base model's readings of one window, decoded as one batch of two.

    Each decoded token reads the vocabulary projection (70 % of the weights tiny.en's decoder reads
    per token) and runs attention once for both readings, where two passes would do it twice.
    Beam search decodes them one after the other: whisper's task cannot batch audios with a beam.
    """
    if options.beam_size:
        return decode_apart(model, mel, features, options, keep, dtype)
    task = CapturingTask(model, options, keep, dtype)
    with adapter_rows(model, 1):  # row 0 adapted, row 1 the base model
        adapted, base = task.run(features.expand(2, -1, -1))
    return _capture(task, adapted, 0, mel, features), _capture(task, base, 1, mel, features)


def decode_apart(
    model: Whisper, mel: torch.Tensor, features: torch.Tensor, options: DecodingOptions, keep: str | None, dtype: torch.dtype
) -> tuple[WindowCapture, WindowCapture]:
    """The readings of ``decode_with_base`` as two decoder passes (for beam search, and to check the batch against)."""
    adapted = decode_window(model, mel, features, options, keep, dtype)
    with disabled_adapters(model):
        return adapted, decode_window(model, mel, features, options, keep, dtype)


def _capture(task: CapturingTask, result: DecodingResult, row: int, mel: torch.Tensor, features: torch.Tensor) -> WindowCapture:
    hidden = task.kept.get(HIDDEN)
    if hidden is not None:
        hidden = hidden[row, : len(result.tokens) + 1]  # drop states after end-of-text, if any
    if isinstance(task.decoder, RecordingGreedyDecoder):
        logprobs = task.decoder.logprobs(row)
    else:
        logprobs = scored_tokens(task.model, task.initial_tokens, result.tokens, features)
    return WindowCapture(
        tokens=tuple(result.tokens),
        text=result.text,
        no_speech_prob=float(result.no_speech_prob),
        avg_logprob=float(result.avg_logprob),
        compression_ratio=float(result.compression_ratio),
        token_logprobs=tuple(logprobs[: len(result.tokens)]),
        hidden=hidden,
        audio_features=features[0].to(task.dtype) if task.keep == AUDIO_FEATURES else None,
        mel=mel.to(task.dtype) if task.keep == MEL else None,
    )


@torch.no_grad()
def scored_tokens(model: Whisper, initial: Sequence[int], tokens: Sequence[int], features: torch.Tensor) -> list[float]:
    """Each of ``tokens``' log-probability after ``initial`` in one teacher-forced decoder pass.

    Beam search keeps only each sequence's sum, and the term guard needs every token's (whisper's
    token filters aside, these equal greedy decoding's records: tests/test_engine.py).
    """
    if not tokens:
        return []
    start = len(initial)
    inputs = torch.tensor([[*initial, *tokens]], device=features.device)
    logprobs = model.decoder(inputs, features[:1]).float().log_softmax(-1)[0]
    return logprobs[start - 1 : -1].gather(-1, inputs[0, start:, None])[:, 0].tolist()
