"""One config: frozen dataclasses with the shipped defaults, read from YAML with strict checks.

The defaults live here, in the package, so an installed ``ffasr`` works from any folder. The
top-level ``config.yaml`` of the repository spells the same defaults out for users to copy and
edit; a test keeps the two equal.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError

MODES = ("logits", "encoder", "full")


@dataclass(frozen=True)
class TrainingConfig:
    mode: str = "encoder"  # what is cached and trained: logits | encoder | full
    learning_rate: float = 6e-4  # AdamW; chosen on the tuning slices, checked against 8e-4 on all five (BENCHMARKS.md)
    accumulation_steps: int = 4  # corrections per optimizer update
    inner_steps: int = 3  # optimizer steps on each accumulated batch (from the cache)
    max_cache_size: int = 100  # cached interactions kept in memory
    freeze_encoder: bool = True  # full mode only: train the encoder too when false
    lora_rank: int = 32
    lora_alpha: float = 32.0
    # Not self-attention: with it, learning "Przemek" turned "Press star" into "Przor" on human
    # speech (+1.4 to +4.7 WER); without it, recall held at 100 % and that speech stayed within +0.2.
    # Not cross_attn.key/value: their projections of the cached audio are then computed once per
    # window (a cheaper update), and recall was higher without them.
    lora_targets: tuple[str, ...] = ("cross_attn.query", "cross_attn.out", "mlp.0", "mlp.2")
    head_rank: int = 16  # logits mode: rank of the residual on the final hidden state
    head_learning_rate: float = 3e-3  # logits mode: the head adapter needs ~10x the LoRA's rate
    grad_clip: float = 1.0
    weight_decay: float = 0.0
    kl_weight: float = 0.0  # KL to the base model on positions the user did not correct
    replay_size: int = 16  # earlier corrections kept for replay
    replay_per_step: int = 8  # of them mixed into each update (more replay: less forgetting, fewer false insertions)
    canary_size: int = 4  # accepted utterances checked before and after each update
    canary_tolerance: float = 0.25  # roll back when their loss rises by more (nats/token)
    min_similarity: float = 0.3  # refuse "corrections" further than this from the hypothesis
    # An accepted transcript that holds a learned term is learned from (riding along with the
    # next batch of corrections), not kept as a canary: a term learned early otherwise got fewer
    # training sentences, since later ones came out right and were only accepted (tuning.md).
    learn_confirmed: bool = True
    cache_dtype: str = "float16"  # float16 halves the cache; float32 for exactness tests


@dataclass(frozen=True)
class DecodingConfig:
    language: str = "en"
    beam_size: int | None = None  # None: greedy
    glossary: bool = True  # a third reading: the base model prompted with the learned terms (BENCHMARKS.md)
    glossary_max_terms: int = 24
    no_speech_threshold: float = 0.6
    # The adapter's words stand only where they agree with the base model or write a learned term
    # (guard.py): once the adapter has been updated, each window is decoded as a batch of two
    # (with and without the adapter).
    term_guard: bool = True
    # ...and a learned term only if each of its tokens was picked with at least this log-probability
    # (greedy decoding; e^-1.25 = 0.29): whole terms written over sound-alikes were less sure (tuning.md).
    term_min_logprob: float = -1.25
    # ...and never over base-model words whose every token it picked with at least this
    # log-probability (e^-0.3 = 0.74): a sure base model heard a word it knows ("Seth", "Granny").
    base_sure_logprob: float = -0.3
    # ...except over the very words a correction of the term replaced ("Valero" for Velero): the
    # user said those were the term, so the base model's sureness does not count there and the
    # term needs only this log-probability (tuning.md, sixth session).
    misheard_min_logprob: float = -2.0
    compression_ratio_threshold: float = 2.4  # above: a repetition loop; that window is decoded again without the adapter
    silence_dbfs: float = -50.0  # quieter than this everywhere: nothing was said


@dataclass(frozen=True)
class Config:
    model: str = "tiny.en"
    device: str | None = None  # None: CUDA when available, else CPU
    training: TrainingConfig = field(default_factory=TrainingConfig)
    decoding: DecodingConfig = field(default_factory=DecodingConfig)

    def __post_init__(self):
        t = self.training
        if t.mode not in MODES:
            raise ConfigError(f"training.mode must be one of {', '.join(MODES)}, got {t.mode!r}")
        for name in ("learning_rate", "head_learning_rate", "lora_alpha", "grad_clip"):
            if getattr(t, name) <= 0:
                raise ConfigError(f"training.{name} must be > 0, got {getattr(t, name)}")
        for name in ("accumulation_steps", "inner_steps", "max_cache_size", "lora_rank", "head_rank"):
            if getattr(t, name) < 1:
                raise ConfigError(f"training.{name} must be >= 1, got {getattr(t, name)}")
        if t.max_cache_size < t.accumulation_steps:
            raise ConfigError("training.max_cache_size must be >= training.accumulation_steps")
        if t.cache_dtype not in ("float16", "float32"):
            raise ConfigError(f"training.cache_dtype must be float16 or float32, got {t.cache_dtype!r}")
        if self.device is not None and not re.fullmatch(r"cpu|cuda(:\d+)?", str(self.device)):
            raise ConfigError(f"device must be cpu, cuda or cuda:N, got {self.device!r}")


def _coerce(where: str, kind: Any, value: Any) -> Any:
    """``value`` checked against the annotation ``kind``, with YAML's looseness (1 for 1.0)."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        return _coerce(where, next(a for a in args if a is not type(None)), value)
    if origin is tuple:
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{where} must be a list of names, got {value!r}")
        return tuple(value)
    if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if kind is bool and isinstance(value, bool) or kind is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if kind is str and isinstance(value, str):
        return value
    names = {float: "a number", int: "an integer", bool: "true or false", str: "a string"}
    raise ConfigError(f"{where} must be {names.get(kind, kind)}, got {value!r}")


def _build(cls: type, values: dict, prefix: str) -> Any:
    if not isinstance(values, dict):
        raise ConfigError(f"{prefix or 'config'} must be a mapping, got {values!r}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown config key {prefix}{unknown[0]}; known keys: {', '.join(sorted(known))}")
    kwargs = {}
    for name, value in values.items():
        kind = hints[name]
        if dataclasses.is_dataclass(kind):
            kwargs[name] = _build(kind, value or {}, f"{prefix}{name}.")
        else:
            kwargs[name] = _coerce(prefix + name, kind, value)
    return cls(**kwargs)


def _merge(base: dict, override: dict) -> dict:
    merged = dict(base)
    for key, value in override.items():
        merged[key] = _merge(base[key], value) if isinstance(value, dict) and isinstance(base.get(key), dict) else value
    return merged


_SECTIONS = {"training": TrainingConfig, "decoding": DecodingConfig}


def _section_of(key: str) -> str | None:
    """The section a flat override belongs to (None for top-level keys such as ``model``)."""
    if key in ("model", "device"):
        return None
    for section, cls in _SECTIONS.items():
        if key in {f.name for f in dataclasses.fields(cls)}:
            return section
    raise ConfigError(f"unknown option {key}")


def load_config(source: str | Path | dict | Config | None = None, **overrides: Any) -> Config:
    """The shipped defaults, updated by a YAML file or dict, then by ``overrides``.

    Overrides are flat: ``learning_rate=1e-4`` sets ``training.learning_rate``; top-level keys
    (``model``, ``device``) and ``decoding`` keys are found the same way. ``None`` means unset.
    """
    if isinstance(source, Config):
        values = dataclasses.asdict(source)
    elif isinstance(source, dict):
        values = source
    elif source is None:
        values = {}
    else:
        import yaml

        path = Path(source)
        try:
            values = yaml.safe_load(path.read_text()) or {}
        except OSError as error:
            raise ConfigError(f"cannot read config {path}: {error.strerror}") from None
        except yaml.YAMLError as error:
            raise ConfigError(f"config {path} is not valid YAML: {str(error).splitlines()[0]}") from None
    nested: dict = {}
    for key, value in overrides.items():
        if value is not None:
            section = _section_of(key)
            (nested.setdefault(section, {}) if section else nested)[key] = value
    return _build(Config, _merge(values, nested), "")


def to_yaml_dict(config: Config) -> dict:
    values = dataclasses.asdict(config)
    values["training"]["lora_targets"] = list(values["training"]["lora_targets"])
    return values
