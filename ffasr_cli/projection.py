"""The decoder's output projection for decoding: hidden state → a logit per vocabulary entry.

Whisper ties it to the token embedding (51,864 × d). For one token on CPU that product is a
matrix-vector product over the whole embedding (80 MB in fp32 for tiny.en), bound by memory
bandwidth: 8.6 ms of the ~30 ms tiny.en spends per decoded token on one core (2026-12-07). In
int8 (one scale per vocabulary entry, fbgemm's dynamic-int8 linear) it reads a quarter of the bytes
and took 1.5 ms, or 1.9 ms for a batch of two where fp32 took 19 ms. Only decoding uses it: an
update's loss, the KL term and the canaries keep whisper's fp32 product.

The int8 copy is made once per embedding and again only if the embedding changes (its version
counter moves), so a learner that never trains the embedding never pays for it twice.
"""

from __future__ import annotations

import warnings
import weakref

import torch

EXACT_TOP = 256  # the most likely entries of each row recomputed in fp32
_packed: dict[int, tuple] = {}  # id(embedding weight) -> (a weak reference to it, its version, the packed int8 weight)


def int8_available(device: torch.device) -> bool:
    return device.type == "cpu" and "fbgemm" in torch.backends.quantized.supported_engines


def _int8_weight(weight: torch.Tensor):
    key = id(weight)
    ref, version, packed = _packed.get(key, (None, None, None))
    if ref is not None and ref() is weight and version == weight._version:
        return packed
    with torch.no_grad():
        w = weight.detach().float()
        scales = (w.abs().amax(dim=1).clamp(min=1e-12) / 127).double()  # symmetric, one scale per vocabulary entry
        zero_points = torch.zeros(len(scales), dtype=torch.long)
        with warnings.catch_warnings():  # quantized tensors are deprecated in torch 2.13, which still packs them (requirements.txt pins it)
            warnings.simplefilter("ignore", UserWarning)
            q = torch.quantize_per_channel(w, scales, zero_points, 0, torch.qint8)
        packed = torch.ops.quantized.linear_prepack(q, None)
    _packed[key] = (weakref.ref(weight, lambda _: _packed.pop(key, None)), weight._version, packed)
    return packed


def vocabulary_logits(hidden: torch.Tensor, embedding: torch.Tensor, int8: bool) -> torch.Tensor:
    """``hidden @ embedding.T`` as fp32 logits; with ``int8``, through the int8 copy of ``embedding``."""
    if not int8:
        return (hidden @ embedding.to(hidden.dtype).T).float()  # whisper's own product
    flat = hidden.reshape(-1, hidden.shape[-1]).float()
    # fbgemm quantizes a call's activations with one scale from their range, so a row's logits would
    # depend on the other rows of the batch (the base model's reading next to the adapter's). Each
    # row is scaled to a largest magnitude of 1, and a row holding -1 and 1 fixes the call's range
    # at [-1, 1] whatever the batch: every row is quantized as it would be alone, in one call that
    # reads the int8 weight once. reduce_range: 7-bit activations, which fbgemm's 16-bit
    # intermediate sums cannot overflow.
    size = flat.abs().amax(dim=-1, keepdim=True).clamp(min=1e-12)
    bounds = torch.zeros(1, flat.shape[-1], dtype=flat.dtype, device=flat.device)
    bounds[0, :2] = torch.tensor([-1.0, 1.0])
    unit = torch.cat([flat / size, bounds])
    logits = torch.ops.quantized.linear_dynamic(unit, _int8_weight(embedding), True)[:-1] * size
    # The entries decoding reads, exact: the token it picks and the log-probability the term guard
    # weighs are among the most likely, which are taken again in fp32; the rest only add their
    # small share to the softmax's sum. On 61 benchmark clips a picked token's log-probability was
    # off by at most 0.14 in int8 alone, 0.024 so (p99 0.014), with the same tokens (2026-12-07).
    top = logits.topk(EXACT_TOP, dim=-1).indices
    logits.scatter_(-1, top, torch.einsum("rd,rkd->rk", flat, embedding.detach().float()[top]))
    return logits.reshape(*hidden.shape[:-1], -1)
