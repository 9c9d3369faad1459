"""Update modes: what is cached while decoding, which adapter is trained, and how the loss is formed.

One small class per mode behind one interface, chosen by ``training.mode``:

========  =====================  ==============================================================
mode      keeps while decoding   loss
========  =====================  ==============================================================
logits    final hidden states    head adapter on the cached states; label aligned to positions
encoder   encoder output         teacher-forced decoder pass on the label (exact, frozen encoder)
full      the mel                encoder + decoder again: the re-run-the-audio baseline
========  =====================  ==============================================================
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from whisper.model import Whisper

from .align import matched_label_positions, position_targets
from .capture import AUDIO_FEATURES, HIDDEN, MEL, WindowCapture
from .config import TrainingConfig
from .lora import add_decoder_lora, add_head_adapter, disabled_adapters


@dataclass(frozen=True)
class Target:
    """What one window should have been: label tokens, ending with end-of-text."""

    window: WindowCapture
    tokens: tuple[int, ...]


class UpdateMode:
    name: str
    keeps: str

    def __init__(self, model: Whisper, config: TrainingConfig, sot_sequence: tuple[int, ...], eot: int):
        self.model, self.config = model, config
        self.sot_sequence, self.eot = sot_sequence, eot

    def install(self) -> list[torch.nn.Parameter]:
        """Add this mode's adapter to the model; return the parameters to train."""
        raise NotImplementedError

    def loss(self, target: Target) -> torch.Tensor:
        """Mean cross-entropy of the label tokens (+ KL to the base model where it was right)."""
        raise NotImplementedError

    def forget(self) -> None:
        """Drop anything kept to speed up the passes of one update."""

    def _adapter_parameters(self) -> list[torch.nn.Parameter]:
        self.model.requires_grad_(False)
        params = [p for name, p in self.model.named_parameters() if ".lora." in name]
        for p in params:
            p.requires_grad_(True)
        return params


def _kl_to_base(logits: torch.Tensor, base_logits: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    if not keep.any():
        return logits.new_zeros(())
    base = F.log_softmax(base_logits[keep].float(), dim=-1)
    return F.kl_div(F.log_softmax(logits[keep].float(), dim=-1), base, log_target=True, reduction="batchmean")


class LogitsMode(UpdateMode):
    """Train a low-rank residual on the final hidden state from the states cached while decoding.

    No encoder and no decoder pass at all: logits are ``adapt(h) · Eᵀ``. Inexact after the first
    error (see ``align.position_targets``).
    """

    name, keeps = "logits", HIDDEN

    def install(self):
        self.head = add_head_adapter(self.model, self.config.head_rank, float(self.config.head_rank))
        return self._adapter_parameters()

    def loss(self, target: Target) -> torch.Tensor:
        window = target.window
        hypothesis = list(window.tokens) + [self.eot]
        targets = position_targets(hypothesis, list(target.tokens))
        hidden = window.hidden.float()[: len(hypothesis)]
        embedding = self.model.decoder.token_embedding.weight.float()
        logits = self.head.adapt(hidden) @ embedding.T
        labels = torch.tensor([-100 if t is None else t for t in targets[: len(hidden)]], device=logits.device)
        loss = F.cross_entropy(logits, labels, ignore_index=-100)
        if self.config.kl_weight > 0:  # the base distribution is the cached state itself: free
            uncorrected = labels == torch.tensor(hypothesis[: len(hidden)], device=labels.device)
            loss = loss + self.config.kl_weight * _kl_to_base(logits, hidden @ embedding.T, uncorrected)
        return loss


class EncoderMode(UpdateMode):
    """Teacher-forced decoder pass on the label from the cached encoder output; LoRA on the decoder."""

    name, keeps = "encoder", AUDIO_FEATURES

    def install(self):
        c = self.config
        add_decoder_lora(self.model, c.lora_targets, c.lora_rank, c.lora_alpha)
        self.cross_kv_frozen = not {"cross_attn.key", "cross_attn.value"} & set(c.lora_targets)
        self.cross_kv_memo: dict[int, tuple[WindowCapture, dict]] = {}
        self.base_logits_memo: dict[tuple, tuple[WindowCapture, torch.Tensor]] = {}
        return self._adapter_parameters()

    def audio_features(self, window: WindowCapture) -> torch.Tensor:
        features = window.audio_features.unsqueeze(0)
        return features.float() if features.device.type == "cpu" else features  # no fp16 matmuls on CPU

    def cross_kv(self, window: WindowCapture, features: torch.Tensor) -> dict | None:
        """Cross-attention keys/values of a cached window, when no adapter touches them.

        They are then a fixed function of the cache entry: projected once per window and reused
        by every later pass (inner steps, replay, canaries) until ``forget``, instead of projecting
        1500 audio frames again each time (a quarter of a pass, measured in benchmarks/cost.py).
        """
        if not self.cross_kv_frozen:
            return None
        if id(window) not in self.cross_kv_memo:
            with torch.no_grad():
                kv = {m: m(features) for block in self.model.decoder.blocks for m in (block.cross_attn.key, block.cross_attn.value)}
            self.cross_kv_memo[id(window)] = (window, kv)  # the window is kept so its id stays unique
        return self.cross_kv_memo[id(window)][1]

    def forget(self) -> None:
        """Drop the reused keys/values and base logits (after an update: they are only worth keeping for one)."""
        self.cross_kv_memo.clear()
        self.base_logits_memo.clear()

    def base_logits(self, target: Target, inputs: torch.Tensor, features: torch.Tensor, cross_kv: dict | None) -> torch.Tensor:
        """The base model's logits on a label, for the KL term: fixed, so computed once per update."""
        key = (id(target.window), target.tokens)
        if key not in self.base_logits_memo:
            self.base_logits_memo[key] = (target.window, self._base_logits_now(inputs, features, cross_kv))
        return self.base_logits_memo[key][1]

    @torch.no_grad()
    def _base_logits_now(self, inputs: torch.Tensor, features: torch.Tensor, cross_kv: dict | None) -> torch.Tensor:
        with disabled_adapters(self.model):
            return self.decoder_logits(inputs, features, cross_kv)[0]

    def decoder_logits(self, inputs: torch.Tensor, features: torch.Tensor, cross_kv: dict | None) -> torch.Tensor:
        # whisper's TextDecoder.forward, except that it takes its position offset from the
        # kv-cache, which here holds only the (full-length) cross-attention keys/values.
        decoder = self.model.decoder
        x = decoder.token_embedding(inputs) + decoder.positional_embedding[: inputs.shape[-1]]
        x = x.to(features.dtype)
        for block in decoder.blocks:
            x = block(x, features, mask=decoder.mask, kv_cache=cross_kv)
        x = decoder.ln(x)
        return (x @ decoder.token_embedding.weight.to(x.dtype).T).float()

    def loss(self, target: Target) -> torch.Tensor:
        features = self.audio_features(target.window)
        cross_kv = self.cross_kv(target.window, features)
        labels = torch.tensor(target.tokens, device=features.device)
        inputs = torch.tensor([*self.sot_sequence, *target.tokens[:-1]], device=features.device).unsqueeze(0)
        start = len(self.sot_sequence) - 1  # the first position that predicts a label token
        logits = self.decoder_logits(inputs, features, cross_kv)[0, start:]
        loss = F.cross_entropy(logits, labels)
        if self.config.kl_weight > 0:
            base_logits = self.base_logits(target, inputs, features, cross_kv)[start:]
            hypothesis = list(target.window.tokens) + [self.eot]
            uncorrected = torch.tensor(matched_label_positions(hypothesis, list(target.tokens)), device=labels.device)
            loss = loss + self.config.kl_weight * _kl_to_base(logits, base_logits, uncorrected)
        return loss


class FullMode(EncoderMode):
    """The baseline: run the encoder on the cached mel again, then the same decoder loss."""

    name, keeps = "full", MEL

    def install(self):
        params = super().install()
        if not self.config.freeze_encoder:
            self.model.encoder.requires_grad_(True)
            params += list(self.model.encoder.parameters())
        return params

    def audio_features(self, window: WindowCapture) -> torch.Tensor:
        mel = window.mel.unsqueeze(0)
        return self.model.encoder(mel.float() if mel.device.type == "cpu" else mel)

    def cross_kv(self, window: WindowCapture, features: torch.Tensor) -> None:
        return None  # the baseline recomputes everything from the audio, every time

    def base_logits(self, target: Target, inputs: torch.Tensor, features: torch.Tensor, cross_kv: dict | None) -> torch.Tensor:
        return self._base_logits_now(inputs, features, cross_kv)  # an unfrozen encoder changes them every step


MODES: dict[str, type[UpdateMode]] = {m.name: m for m in (LogitsMode, EncoderMode, FullMode)}
