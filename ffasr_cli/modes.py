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

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from whisper.model import Whisper

from .align import matched_label_positions, position_targets
from .capture import AUDIO_FEATURES, HIDDEN, MEL, WindowCapture, run_encoder
from .config import TrainingConfig
from .lora import add_decoder_lora, add_head_adapter, disabled_adapters

IGNORE = -100  # label of a padded position: no loss


@dataclass(frozen=True)
class Target:
    """What one window should have been: label tokens, ending with end-of-text."""

    window: WindowCapture
    tokens: tuple[int, ...]


class UpdateMode:
    name: str
    keeps: str

    def __init__(self, model: Whisper, config: TrainingConfig, sot_sequence: tuple[int, ...], eot: int, encoder_bf16: bool = False):
        self.model, self.config = model, config
        self.sot_sequence, self.eot = sot_sequence, eot
        self.encoder_bf16 = encoder_bf16  # decoding runs the encoder's products in bf16 (``Reader.bf16``)

    def install(self) -> list[torch.nn.Parameter]:
        """Add this mode's adapter to the model; return the parameters to train."""
        raise NotImplementedError

    def losses(self, targets: Sequence[Target], reuse: bool = False) -> torch.Tensor:
        """Per target: mean cross-entropy of its label tokens (+ KL to the base model where it was right).

        With ``reuse``, what this group of targets needs on every pass (and does not depend on
        the adapter) is kept until ``forget``: the agent passes the same groups again in an update.
        """
        raise NotImplementedError

    def forget(self) -> None:
        """Drop what ``reuse`` kept (after an update: it is only worth keeping for one)."""

    def _adapter_parameters(self) -> list[torch.nn.Parameter]:
        self.model.requires_grad_(False)
        params = [p for name, p in self.model.named_parameters() if ".lora." in name]
        for p in params:
            p.requires_grad_(True)
        return params


def _kl_to_base(logits: torch.Tensor, base_logits: torch.Tensor) -> torch.Tensor:
    """KL(base ‖ adapted) at each position."""
    base = F.log_softmax(base_logits.float(), dim=-1)
    return F.kl_div(F.log_softmax(logits.float(), dim=-1), base, log_target=True, reduction="none").sum(-1)


class LogitsMode(UpdateMode):
    """Train a low-rank residual on the final hidden state from the states cached while decoding.

    No encoder and no decoder pass at all: logits are ``adapt(h) · Eᵀ``. Inexact after the first
    error (see ``align.position_targets``).
    """

    name, keeps = "logits", HIDDEN

    def install(self):
        self.head = add_head_adapter(self.model, self.config.head_rank, float(self.config.head_rank))
        return self._adapter_parameters()

    def losses(self, targets: Sequence[Target], reuse: bool = False) -> torch.Tensor:
        return torch.stack([self._loss(target) for target in targets])  # no pass to batch: a product each

    def _loss(self, target: Target) -> torch.Tensor:
        window = target.window
        hypothesis = list(window.tokens) + [self.eot]
        targets = position_targets(hypothesis, list(target.tokens))
        hidden = window.hidden.float()[: len(hypothesis)]
        embedding = self.model.decoder.token_embedding.weight.float()
        logits = self.head.adapt(hidden) @ embedding.T
        labels = torch.tensor([IGNORE if t is None else t for t in targets[: len(hidden)]], device=logits.device)
        loss = F.cross_entropy(logits, labels, ignore_index=IGNORE)
        if self.config.kl_weight > 0:  # the base distribution is the cached state itself: free
            uncorrected = labels == torch.tensor(hypothesis[: len(hidden)], device=labels.device)
            kl = _kl_to_base(logits, hidden @ embedding.T)
            loss = loss + self.config.kl_weight * (kl * uncorrected).sum() / uncorrected.sum().clamp(min=1)
        return loss


class EncoderMode(UpdateMode):
    """Teacher-forced decoder pass on the label from the cached encoder output; LoRA on the decoder."""

    name, keeps = "encoder", AUDIO_FEATURES

    def install(self):
        c = self.config
        add_decoder_lora(self.model, c.lora_targets, c.lora_rank, c.lora_alpha)
        self.cross_kv_frozen = not {"cross_attn.key", "cross_attn.value"} & set(c.lora_targets)
        self.kept: dict[tuple, tuple[Sequence[Target], dict]] = {}
        return self._adapter_parameters()

    def audio_features(self, targets: Sequence[Target]) -> torch.Tensor:
        # The update runs in fp32 on every device, as the defaults were tuned on CPU: the cache is
        # fp16, and an fp16 backward without loss scaling can flush small gradients to zero
        # (benchmarks/cuda_check.py measures both on a GPU).
        return torch.stack([t.window.audio_features for t in targets]).float()

    def keep(self, targets: Sequence[Target], what: str, compute) -> torch.Tensor | dict:
        """``compute()``, or what it gave for this same group of targets earlier in the update."""
        key = tuple((id(t.window), t.tokens) for t in targets)
        if key not in self.kept:
            self.kept[key] = (targets, {})  # the targets are kept so that their windows' ids stay unique
        kept = self.kept[key][1]
        if what not in kept:
            kept[what] = compute()
        return kept[what]

    def forget(self) -> None:
        self.kept.clear()

    @torch.no_grad()
    def cross_kv(self, features: torch.Tensor) -> dict:
        """Cross-attention keys/values of the audio frames, when no adapter touches them.

        They are then a fixed function of the cache entries: with ``reuse`` they are projected
        once per update and group instead of projecting 1500 audio frames again each pass (a
        quarter of a pass, measured in benchmarks/cost.py).
        """
        return {m: m(features) for block in self.model.decoder.blocks for m in (block.cross_attn.key, block.cross_attn.value)}

    @torch.no_grad()
    def base_logits(self, inputs: torch.Tensor, features: torch.Tensor, cross_kv: dict | None, known: torch.Tensor) -> torch.Tensor:
        """The base model's logits at the label positions, for the KL term."""
        with disabled_adapters(self.model):
            return self.label_logits(inputs, features, cross_kv, known)

    def label_logits(self, inputs: torch.Tensor, features: torch.Tensor, cross_kv: dict | None, known: torch.Tensor) -> torch.Tensor:
        """Logits at the positions that predict a label token (``known``), as one (positions, vocab) matrix.

        whisper's TextDecoder.forward, except that it takes its position offset from the
        kv-cache, which here holds only the (full-length) cross-attention keys/values; and the
        vocabulary projection, the largest product of a pass, is left out at padding.
        """
        decoder = self.model.decoder
        x = decoder.token_embedding(inputs) + decoder.positional_embedding[: inputs.shape[-1]]
        x = x.to(features.dtype)
        for block in decoder.blocks:
            x = block(x, features, mask=decoder.mask, kv_cache=cross_kv)
        x = decoder.ln(x)[:, len(self.sot_sequence) - 1 :][known]  # from the first position that predicts a label token
        return (x @ decoder.token_embedding.weight.to(x.dtype).T).float()

    def teacher_forcing(self, targets: Sequence[Target], device) -> tuple[torch.Tensor, torch.Tensor]:
        """Decoder inputs (start-of-transcript, then the label) and labels, right-padded to one length.

        The decoder is causal, so padding after a row's end changes nothing before it; padded
        label positions are ignored.
        """
        length = max(len(t.tokens) for t in targets)
        inputs = torch.full((len(targets), len(self.sot_sequence) - 1 + length), self.eot, dtype=torch.long)
        labels = torch.full((len(targets), length), IGNORE, dtype=torch.long)
        for row, t in enumerate(targets):
            inputs[row, : len(self.sot_sequence) + len(t.tokens) - 1] = torch.tensor([*self.sot_sequence, *t.tokens[:-1]])
            labels[row, : len(t.tokens)] = torch.tensor(t.tokens)
        return inputs.to(device), labels.to(device)

    def uncorrected(self, targets: Sequence[Target]) -> torch.Tensor:
        """For each label position of the group, in order: 1 where the hypothesis already had that token."""
        return torch.tensor([m for t in targets for m in matched_label_positions([*t.window.tokens, self.eot], list(t.tokens))], dtype=torch.float)

    def losses(self, targets: Sequence[Target], reuse: bool = False) -> torch.Tensor:
        def keep(what, compute):
            return self.keep(targets, what, compute) if reuse else compute()

        features = self.audio_features(targets)
        cross_kv = keep("cross_kv", lambda: self.cross_kv(features)) if self.cross_kv_frozen else None
        inputs, labels = self.teacher_forcing(targets, features.device)
        known = labels != IGNORE
        row = known.nonzero()[:, 0]  # the target of each label position

        def per_target(values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
            totals = values.new_zeros(len(targets)).index_add(0, row, values * weights)
            return totals / weights.new_zeros(len(targets)).index_add(0, row, weights).clamp(min=1)

        logits = self.label_logits(inputs, features, cross_kv, known)
        ones = torch.ones(len(row), device=logits.device)
        loss = per_target(F.cross_entropy(logits, labels[known], reduction="none"), ones)
        if self.config.kl_weight > 0:
            base_logits = keep("base_logits", lambda: self.base_logits(inputs, features, cross_kv, known))
            uncorrected = keep("uncorrected", lambda: self.uncorrected(targets).to(logits.device, logits.dtype))
            loss = loss + self.config.kl_weight * per_target(_kl_to_base(logits, base_logits), uncorrected)
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

    def audio_features(self, targets: Sequence[Target]) -> torch.Tensor:
        # the encoder as decoding ran it (capture.encode), the decoder as encoder mode runs it
        mel = torch.stack([t.window.mel for t in targets])
        return run_encoder(self.model, mel, fp16=mel.device.type != "cpu", bf16=self.encoder_bf16).float()

    def keep(self, targets: Sequence[Target], what: str, compute) -> torch.Tensor | dict:
        return compute()  # the baseline recomputes everything from the audio, every pass


MODES: dict[str, type[UpdateMode]] = {m.name: m for m in (LogitsMode, EncoderMode, FullMode)}
