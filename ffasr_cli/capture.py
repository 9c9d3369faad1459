"""Decode one 30 s window with whisper's own ``DecodingTask``, keeping what an update will need.

Nothing is computed twice: the encoder runs once per window (``encode``) and its output is given
to whisper's task, which skips its own encoder for input shaped like encoder output; the
decoder's final hidden states are taken from the decoding pass itself (a forward hook on the
decoder's final layer norm), not from a second forward pass. The same encoder output serves the
base model's reading for the term guard (``guard.py``), decoded in the same batch, and the
glossary's reading; the decoder's cross-attention keys and values over the window's 1,500 frames
are projected once per weights (``Window``) and shared by every reading that uses them.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field, replace

import numpy as np
import torch
import torch.nn.functional as F
import whisper
from whisper.decoding import DecodingOptions, DecodingResult, DecodingTask, GreedyDecoder, PyTorchInference, SuppressBlank
from whisper.model import Whisper
from whisper.utils import compression_ratio

from .lora import HeadAdapter, LoRALinear, adapter_rows, disabled_adapters
from .projection import vocabulary_logits

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
    doubtful: tuple[str, ...] = ()  # shown terms where a wrong term is likeliest (guard.doubtful_terms); not kept on disk
    base_text: str = ""  # the base model's reading (the term guard's), which a correction back of a term is aligned to

    @property
    def nbytes(self) -> int:
        tensors = (self.hidden, self.audio_features, self.mel)
        return sum(t.numel() * t.element_size() for t in tensors if t is not None)


def final_norm(model: Whisper) -> torch.nn.Module:
    """The layer norm whose output the output projection reads (inside a head adapter if any)."""
    ln = model.decoder.ln
    return ln.ln if isinstance(ln, HeadAdapter) else ln


class RecordingGreedyDecoder(GreedyDecoder):
    """whisper's greedy decoder, also recording the log-probability of each token it picks.

    Given ``until`` (another reading's tokens, for a one-row decode), it stops as soon as its last
    two picks are two consecutive tokens of ``until``: it has rejoined that reading, and
    ``rejoined`` is the index in ``until`` of the second (``Window.decode_like``).
    """

    def __init__(self, temperature: float, eot: int, until: Sequence[int] = ()):
        super().__init__(temperature, eot)
        self.steps: list[torch.Tensor] = []  # per decoding step, [rows]
        self.pairs = {(until[j - 1], until[j]): j for j in reversed(range(1, len(until)))}  # the first place each pair is
        self.rejoined: int | None = None

    def reset(self):
        self.steps, self.rejoined = [], None

    def update(self, tokens: torch.Tensor, logits: torch.Tensor, sum_logprobs: torch.Tensor):
        before = sum_logprobs.clone()
        tokens, completed = super().update(tokens, logits, sum_logprobs)
        self.steps.append(sum_logprobs - before)
        if self.pairs and not completed and len(self.steps) >= 2:
            self.rejoined = self.pairs.get(tuple(tokens[0, -2:].tolist()))
            completed = self.rejoined is not None
        return tokens, completed

    def logprobs(self, row: int) -> list[float]:
        return [float(step[row]) for step in self.steps]


CrossKV = dict[torch.nn.Module, torch.Tensor]  # a cross-attention key or value projection -> its output on the window, split into heads


def cross_projections(model: Whisper) -> list[torch.nn.Module]:
    return [projection for block in model.decoder.blocks for projection in (block.cross_attn.key, block.cross_attn.value)]


def split_heads(x: torch.Tensor, n_head: int) -> torch.Tensor:
    """[rows, positions, width] → [rows, n_head, positions, width / n_head], as whisper's attention splits it (a view)."""
    return x.view(*x.shape[:2], n_head, -1).permute(0, 2, 1, 3)


class WindowInference(PyTorchInference):
    """whisper's kv-cached decoder forward, with the window's cross-attention keys and values given
    (``cross_kv``) and the output projection of ``projection.vocabulary_logits``.

    The kv-cache holds self-attention's keys and values only, so the positions decoded so far are
    its length, as in whisper's own decoder. Of the first pass's positions (the
    prompt, if any, and the start of the transcript) it projects only the two whisper's loop reads:
    the start of transcript (the no-speech probability) and the last; a 24-term glossary prompt is
    80 positions.
    """

    def __init__(self, model: Whisper, initial_token_length: int, sot_index: int, kv: CrossKV, int8: bool):
        super().__init__(model, initial_token_length)
        self.sot_index, self.cross, self.int8 = sot_index, kv, int8

    def logits(self, tokens: torch.Tensor, audio_features: torch.Tensor) -> torch.Tensor:
        if tokens.shape[-1] > self.initial_token_length:
            tokens = tokens[:, -1:]  # after the first pass the kv-cache holds the rest
        hidden = self.hidden(tokens, audio_features)
        embedding = self.model.decoder.token_embedding.weight
        if hidden.shape[1] == 1:
            return vocabulary_logits(hidden, embedding, self.int8)
        read = [self.sot_index, hidden.shape[1] - 1]
        logits = hidden.new_empty(*hidden.shape[:2], embedding.shape[0], dtype=torch.float32)  # the rest is never read
        logits[:, read] = vocabulary_logits(hidden[:, read], embedding, self.int8)
        return logits

    def hidden(self, tokens: torch.Tensor, audio_features: torch.Tensor) -> torch.Tensor:
        """The decoder's final hidden states at ``tokens``, which follow the positions in the kv-cache."""
        if not self.kv_cache:
            self.kv_cache, self.hooks = self.model.install_kv_cache_hooks()  # self-attention's; cross-attention's are given
        decoder = self.model.decoder
        offset = next(iter(self.kv_cache.values())).shape[1] if self.kv_cache else 0
        x = decoder.token_embedding(tokens) + decoder.positional_embedding[offset : offset + tokens.shape[-1]]
        x = x.to(audio_features.dtype)
        for block in decoder.blocks:  # whisper's ResidualAttentionBlock.forward, with the cross-attention below
            x = x + block.attn(block.attn_ln(x), mask=decoder.mask, kv_cache=self.kv_cache)[0]
            x = x + self.cross_attention(block.cross_attn, block.cross_attn_ln(x))
            x = x + block.mlp(block.mlp_ln(x))
        return decoder.ln(x)

    def cross_attention(self, attention, x: torch.Tensor) -> torch.Tensor:
        """``attention`` (a cross-attention) over the window's keys and values (``cross``): whisper's
        ``qkv_attention`` with scaled-dot-product attention, on keys and values split into heads
        once per window (``Window.cross_kv``), where whisper splits them again at every token and the
        attention then reads them strided (30 % slower, the same numbers to the bit).

        Keys and values that every row shares (the base model's and the adapter's, both readings of
        the term guard's batch; the beams of a beam search) are attended once, by all the rows'
        queries together: cross-attention has no mask, so each query is independent of the others,
        and the 1,500 frames' keys and values are read once a token, not once a row.
        """
        keys, values = self.cross[attention.key], self.cross[attention.value]
        q = attention.query(x)  # per row: the adapter's rows and the base rows stay apart (adapter_rows)
        rows, positions, width = q.shape
        if keys.shape[0] == 1 and rows > 1:
            q = q.reshape(1, rows * positions, width)
        keys, values = keys.expand(q.shape[0], -1, -1, -1), values.expand(q.shape[0], -1, -1, -1)
        attended = F.scaled_dot_product_attention(split_heads(q, attention.n_head), keys, values)
        return attention.out(attended.permute(0, 2, 1, 3).reshape(rows, positions, width))


class CapturingTask(DecodingTask):
    """whisper's ``DecodingTask``, keeping the decoder's per-step hidden states when asked, decoding
    with ``WindowInference``."""

    def __init__(
        self, model: Whisper, options: DecodingOptions, keep: str | None, dtype: torch.dtype, kv: CrossKV, int8: bool,
        until: Sequence[int] = (),
    ):  # fmt: skip
        super().__init__(model, options)
        self.keep, self.dtype = keep, dtype
        self.kept: dict[str, torch.Tensor] = {}
        self.inference = WindowInference(model, len(self.initial_tokens), self.sot_index, kv, int8)
        if options.prefix:  # only a reading resumed mid-sentence has one (``Window.decode_like``): blank is no longer its first token
            self.logit_filters = [f for f in self.logit_filters if not isinstance(f, SuppressBlank)]
        if isinstance(self.decoder, GreedyDecoder):
            self.decoder = RecordingGreedyDecoder(options.temperature, self.tokenizer.eot, until)
        else:
            self.decoder.inference = self.inference  # beam search reorders the kv-cache of the inference it was given

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


def bf16_available(device: torch.device) -> bool:
    """Whether ``device`` is a CPU that multiplies bf16 matrices in hardware (AMX tiles)."""
    return device.type == "cpu" and getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)()


def run_encoder(model: Whisper, mel: torch.Tensor, fp16: bool, bf16: bool = False) -> torch.Tensor:
    """The encoder's output on a batch of log-mels as decoding computes it: in fp16 (``fp16``, a
    GPU), else in fp32, or with its products in bf16 and its output in fp32 (``bf16``: a CPU with
    ``bf16_available``, ``decoding.bf16_encoder``)."""
    if fp16:
        return model.encoder(mel.half())
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        return model.encoder(mel.float()).float()


@torch.no_grad()
def encode(model: Whisper, audio: np.ndarray, fp16: bool, bf16: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """The log-mel of ≤30 s of 16 kHz audio, and the encoder's output on it ([1, n_audio_ctx, d])."""
    mel = whisper.log_mel_spectrogram(whisper.pad_or_trim(torch.from_numpy(audio)).to(model.device))
    return mel, run_encoder(model, mel.unsqueeze(0), fp16, bf16)


@dataclass
class Window:
    """One encoded window and what its readings share: the encoder output, and the cross-attention
    keys and values of the decoder with the adapter and without it, each projected once."""

    model: Whisper
    mel: torch.Tensor
    features: torch.Tensor  # [1, n_audio_ctx, d]
    dtype: torch.dtype  # what kept tensors are stored in
    int8: bool = False  # the output projection in int8 (``projection.py``)
    kv: dict[bool, CrossKV] = field(default_factory=dict)  # adapted? -> its cross-attention keys and values

    def cross_kv(self, adapted: bool) -> CrossKV:
        """The window's cross-attention keys and values, with the adapters or without, split into
        heads ([1, heads, frames, head width]); a projection without an adapter (the shipped
        ``lora_targets`` adapt none) is the same for both, and is projected once."""
        if adapted not in self.kv:
            other, heads = self.kv.get(not adapted, {}), self.model.dims.n_text_head
            with torch.no_grad(), nullcontext() if adapted else disabled_adapters(self.model):
                self.kv[adapted] = {
                    p: other[p] if p in other and not isinstance(p, LoRALinear) else split_heads(p(self.features), heads).contiguous()
                    for p in cross_projections(self.model)
                }
        return self.kv[adapted]

    def decode(self, options: DecodingOptions, keep: str | None, adapted: bool = True) -> WindowCapture:
        """One reading, with the adapter or without it; ``keep`` names what to keep (HIDDEN, AUDIO_FEATURES, MEL or None)."""
        with nullcontext() if adapted else disabled_adapters(self.model):
            task = CapturingTask(self.model, options, keep, self.dtype, self.cross_kv(adapted), self.int8)
            return _capture(task, task.run(self.features)[0], 0, self.mel, self.features)

    def decode_with_base(self, options: DecodingOptions, keep: str | None) -> tuple[WindowCapture, WindowCapture]:
        """The adapted model's and the base model's readings, decoded as one batch of two.

        Each decoded token runs attention and the output projection once for both readings, where
        two passes would do it twice. Beam search decodes them one after the other: whisper's task
        cannot batch audios with a beam.
        """
        if options.beam_size:
            return self.decode_apart(options, keep)
        adapted_kv, base_kv = self.cross_kv(True), self.cross_kv(False)
        both = {p: kv if kv is base_kv[p] else torch.cat([kv, base_kv[p]]) for p, kv in adapted_kv.items()}
        with adapter_rows(self.model, 1):  # row 0 adapted, row 1 the base model
            task = CapturingTask(self.model, options, keep, self.dtype, both, self.int8)
            adapted, base = task.run(self.features.expand(2, -1, -1))
        return _capture(task, adapted, 0, self.mel, self.features), _capture(task, base, 1, self.mel, self.features)

    def decode_apart(self, options: DecodingOptions, keep: str | None) -> tuple[WindowCapture, WindowCapture]:
        """The readings of ``decode_with_base`` as two decoder passes (for beam search, and to check the batch against)."""
        return self.decode(options, keep), self.decode(options, keep, adapted=False)

    def decode_like(self, options: DecodingOptions, like: Sequence[int]) -> WindowCapture:
        """The base model's reading, ``decode(options, None, adapted=False)``, decoded only where it
        departs from ``like``, another reading's tokens of this window.

        Greedy decoding picks each token from those before it, so where the reading would write
        ``like``'s tokens it is those tokens, and one teacher-forced pass over them (``agreement``,
        about the cost of three decoded tokens) says how far that is. From the first token where it
        departs, it is decoded until it writes two of ``like``'s tokens in a row again (past a name
        it spells otherwise, it rejoins the other reading), and another pass checks the rest of
        ``like`` from there. The glossary's prompted reading mostly writes what the unprompted one
        did: then nothing is decoded. Beam search keeps several sequences and is decoded in full.
        """
        if options.beam_size:
            return self.decode(options, None, adapted=False)
        tokens: list[int] = []  # the reading so far
        logprobs: list[float] = []
        total = 0.0  # whisper's sum of log-probabilities, which counts the end of text
        no_speech = None

        def resumed(until: Sequence[int] = ()) -> CapturingTask:
            """The base model's task, resumed after the reading so far (stopping where it rejoins ``until``)."""
            return CapturingTask(self.model, replace(options, prefix=list(tokens)), None, self.dtype, self.cross_kv(False), self.int8, until)

        with disabled_adapters(self.model):
            while True:
                task = resumed()
                agreed = self.agreement(task, like[: task.n_ctx - len(task.initial_tokens)])  # a long prompt leaves fewer positions
                no_speech = agreed.no_speech_prob if no_speech is None else no_speech
                tokens += like[: agreed.length]
                logprobs += agreed.logprobs[: agreed.length]
                total += sum(agreed.logprobs if agreed.ends else agreed.logprobs[:-1])
                if agreed.ends:
                    break
                departed = like[agreed.length :]
                task = resumed(until=departed)
                rest = _capture(task, task.run(self.features)[0], 0, self.mel, self.features)
                tokens += rest.tokens
                logprobs += rest.token_logprobs
                if task.decoder.rejoined is None:
                    total += rest.avg_logprob * (len(rest.tokens) + 1)
                    break
                total += sum(rest.token_logprobs)
                like = departed[task.decoder.rejoined + 1 :]
        text = task.tokenizer.decode(tokens).strip()
        return WindowCapture(
            tokens=tuple(tokens), text=text, no_speech_prob=no_speech, avg_logprob=total / (len(tokens) + 1),
            compression_ratio=compression_ratio(text), token_logprobs=tuple(logprobs),
        )  # fmt: skip

    @torch.no_grad()
    def agreement(self, task: CapturingTask, tokens: Sequence[int]) -> Agreement:
        """How far ``task``'s greedy decoding would pick ``tokens``, then end, itself: one
        teacher-forced pass over them, each position's logits filtered as its decoding filters them."""
        eot, initial = task.tokenizer.eot, list(task.initial_tokens)
        sequence = torch.tensor([initial + list(tokens)], device=self.features.device)
        try:
            hidden = task.inference.hidden(sequence, self.features)  # the whole sequence in one pass
        finally:
            task.inference.cleanup_caching()
        rows = [task.sot_index, *range(len(initial) - 1, sequence.shape[-1])]  # then each position that picks a token
        logits = vocabulary_logits(hidden[:, rows], self.model.decoder.token_embedding.weight, self.int8)[0]
        no_speech = float(logits[0].softmax(-1)[task.tokenizer.no_speech]) if task.tokenizer.no_speech is not None else float("nan")
        picked = []
        for i, given in enumerate([*tokens, eot]):
            row = logits[1 + i : 2 + i].clone()
            for logit_filter in task.logit_filters:
                logit_filter.apply(row, sequence[:, : len(initial) + i])
            logprobs = row.log_softmax(-1)[0]
            pick = int(logprobs.argmax())
            picked.append(float(logprobs[pick]))
            if pick != given or pick == eot:
                break
        return Agreement(i, tuple(picked), pick == eot, no_speech)


@dataclass(frozen=True)
class Agreement:
    """How far greedy decoding would write given tokens itself (``Window.agreement``)."""

    length: int  # the given tokens it picks, from the first
    logprobs: tuple[float, ...]  # its log-probability of each of them, then of the token it picks next
    ends: bool  # the token it picks next is end of text: its reading is those tokens
    no_speech_prob: float


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
