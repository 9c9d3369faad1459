"""Adapters: the small trainable parts that hold what the user taught.

* ``LoRALinear`` wraps one of Whisper's linear layers with a low-rank update ``B·A`` (B starts at
  zero, so a fresh adapter changes nothing). It stays an ``nn.Module`` in the same attribute, so
  Whisper's kv-cache hooks on ``key``/``value`` keep working. An update goes through ``B·A``;
  decoding (no gradients) uses the merged weight ``W + scale·B·A``, one product per layer.
  ``adapter_rows`` lets one batch hold adapted rows and base-model rows (the term guard's readings):
  the base product for every row, and the low-rank update added to the adapted ones.
* ``HeadAdapter`` wraps the decoder's final layer norm with a low-rank residual on the hidden state
  ``h`` that the output projection reads; the ``logits`` mode trains only this.

Why not PEFT: it imports transformers, which adds ~3 s to every ``ffasr`` start (measured: 4.1 s to
import peft vs 1.2 s for whisper) and pulls transformers, accelerate and huggingface_hub into the
install, for ~60 lines of code here.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn
from whisper.model import Whisper

class LowRank(nn.Module):
    """``x ↦ scale · B(A(x))`` with B zero-initialised."""

    def __init__(self, in_features: int, out_features: int, rank: int, alpha: float):
        super().__init__()
        self.A = nn.Parameter(torch.empty(rank, in_features))
        self.B = nn.Parameter(torch.zeros(out_features, rank))
        nn.init.kaiming_uniform_(self.A, a=math.sqrt(5))
        self.scale = alpha / rank
        self.rows: int | None = None  # None: every row of a batch is adapted; n: only the first n (``adapter_rows``)
        self._decoding: tuple[tuple, torch.Tensor, torch.Tensor] | None = None  # (versions, Aᵀ, Bᵀ)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # scale the rank-r intermediate, not the output: over 1500 audio frames that is 12x less work
        return ((x @ self.A.to(x.dtype).T) * self.scale) @ self.B.to(x.dtype).T

    def decoding_factors(self, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """Aᵀ and Bᵀ in ``dtype``, contiguous, copied again whenever an update (or a restore) changed
        A or B (``with_update``)."""
        versions = (self.A._version, self.B._version, dtype)  # bumped by in-place writes
        if self._decoding is None or self._decoding[0] != versions:
            self._decoding = (versions, self.A.detach().T.to(dtype).contiguous(), self.B.detach().T.to(dtype).contiguous())
        return self._decoding[1:]


def with_update(out: torch.Tensor, x: torch.Tensor, lora: LowRank) -> torch.Tensor:
    """``out`` (the base layer's output on ``x``) plus ``lora(x)`` on the rows the adapter is on
    (``adapter_rows``: the first ``lora.rows`` of the batch; None: all of them). It may write into
    ``out``, which must be the caller's own."""
    if lora.rows is None:
        return out + lora(x)
    if lora.rows == 0:
        return out
    # Such a batch is only decoded, never trained (whisper decodes without gradients): the update
    # is added to the adapted rows in place, in one product with contiguous factors. Multiplying a
    # row by a transposed view took 3x as long as by a contiguous copy (44 against 14 µs for base's
    # ``mlp.0``), and with the slicing and joining of rows around it the update took a fifth of the
    # batch's decoding time. In one interleaved run over the decode table's 22 windows (base, one
    # core, 2026-12-07): one reading 7.10 s, the batch 8.97 s before, 8.59 s in place.
    down, up = lora.decoding_factors(x.dtype)
    adapted = out[: lora.rows].view(-1, out.shape[-1])
    adapted.addmm_(x[: lora.rows].reshape(-1, x.shape[-1]) @ down, up, alpha=lora.scale)
    return out


class LoRALinear(nn.Module):
    def __init__(self, base: nn.Linear, rank: int, alpha: float):
        super().__init__()
        self.base = base
        self.lora = LowRank(base.in_features, base.out_features, rank, alpha)
        self._decoding: tuple[tuple, torch.Tensor] | None = None  # (versions, merged weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.lora.rows is None:
            return self.adapted(x)
        # A batch of adapted and base rows (the term guard's two readings): the base product once
        # for every row, the low-rank update added to the adapted ones. The merged weight for some
        # rows and the base weight for the others would read two weight matrices a token.
        return with_update(self.base(x), x, self.lora)

    def adapted(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled():  # an update: the low-rank path, which gradients reach
            return self.base(x) + self.lora(x)
        # Decoding: one product with the merged weight, as cheap as the base layer. On a GPU the
        # low-rank path's extra small kernels made every decoded token 40 % slower (cuda_check).
        bias = None if self.base.bias is None else self.base.bias.to(x.dtype)
        return F.linear(x, self.decoding_weight(x.dtype), bias)

    def decoding_weight(self, dtype: torch.dtype) -> torch.Tensor:
        """``W + scale·B·A`` in ``dtype``, merged again whenever an update (or a restore) changed A, B or W."""
        versions = (self.lora.A._version, self.lora.B._version, self.base.weight._version, dtype)  # bumped by in-place writes
        if self._decoding is None or self._decoding[0] != versions:
            with torch.no_grad():
                merged = self.base.weight + (self.lora.B @ self.lora.A) * self.lora.scale
            self._decoding = (versions, merged.to(dtype))
        return self._decoding[1]

    def merged(self) -> nn.Linear:
        """The base layer with the update folded into its weight (for export)."""
        delta = (self.lora.B @ self.lora.A) * self.lora.scale
        self.base.weight.data += delta.to(self.base.weight.dtype)
        return self.base


class HeadAdapter(nn.Module):
    """Final decoder layer norm followed by a low-rank residual: ``h + scale·B(A(h))``."""

    def __init__(self, ln: nn.LayerNorm, rank: int, alpha: float):
        super().__init__()
        self.ln = ln
        width = ln.normalized_shape[0]
        self.lora = LowRank(width, width, rank, alpha)

    def adapt(self, hidden: torch.Tensor) -> torch.Tensor:
        # a copy: ``with_update`` may write into it, and decoding keeps the layer norm's output
        return with_update(hidden.clone(), hidden, self.lora)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.adapt(self.ln(x))


def _resolve(root: nn.Module, dotted: str) -> tuple[nn.Module, str]:
    *parents, leaf = dotted.split(".")
    for name in parents:
        root = getattr(root, name)
    return root, leaf


def add_decoder_lora(model: Whisper, targets: tuple[str, ...], rank: int, alpha: float) -> None:
    for block in model.decoder.blocks:
        for target in targets:
            parent, leaf = _resolve(block, target)
            layer = getattr(parent, leaf)  # also works for nn.Sequential's "0", "2"
            setattr(parent, leaf, LoRALinear(layer, rank, alpha).to(layer.weight.device))


def add_head_adapter(model: Whisper, rank: int, alpha: float) -> HeadAdapter:
    adapter = HeadAdapter(model.decoder.ln, rank, alpha).to(model.decoder.ln.weight.device)
    model.decoder.ln = adapter
    return adapter


def low_rank_modules(model: nn.Module) -> Iterator[tuple[str, LowRank]]:
    return ((name, module) for name, module in model.named_modules() if isinstance(module, LowRank))


class adapter_rows:
    """Context manager: only the first ``rows`` rows of a batch go through the adapters, the rest
    through the base model. One decoder pass then reads a window both ways (the term guard)."""

    def __init__(self, model: nn.Module, rows: int):
        self.modules = [module for _, module in low_rank_modules(model)]
        self.rows = rows
        self.outer: list[int | None] = []

    def __enter__(self):
        self.outer = [module.rows for module in self.modules]  # restored on exit: these contexts nest
        for module in self.modules:
            module.rows = self.rows

    def __exit__(self, *exc):
        for module, rows in zip(self.modules, self.outer):
            module.rows = rows


def disabled_adapters(model: nn.Module) -> adapter_rows:
    """Context manager: the base model, as if no adapter were installed (for KL and canaries)."""
    return adapter_rows(model, 0)


def merge_into_base(model: Whisper) -> None:
    """Fold every decoder LoRA into its base linear layer, leaving a plain Whisper model."""
    for block in model.decoder.blocks:
        for name, module in list(block.named_modules()):
            if isinstance(module, LoRALinear):
                parent, leaf = _resolve(block, name)
                setattr(parent, leaf, module.merged())
