"""One config: frozen dataclasses with the shipped defaults, read from YAML with strict checks.

The defaults live here, in the package, so an installed ``ffasr`` works from any folder. The
top-level ``config.yaml`` of the repository spells the same defaults out for users to copy and
edit; a test keeps the two equal. Every number has its allowed range next to its default
(``setting``): a value outside it, NaN or infinity is refused when the config is read, with one
line, before anything is loaded or learned.
"""

from __future__ import annotations

import dataclasses
import math
import re
import reprlib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError

MODES = ("logits", "encoder", "full")
# The layers of a Whisper decoder block that can carry a LoRA (names inside ``model.decoder.blocks[i]``).
LORA_TARGETS = tuple(f"{attn}.{part}" for attn in ("attn", "cross_attn") for part in ("query", "key", "value", "out")) + ("mlp.0", "mlp.2")
MAX_CONFIG_BYTES = 1_000_000  # a config is a few hundred bytes; a bigger file is a mistake
MAX_YAML_ALIASES = 100  # YAML aliases nest: a 600-byte file of them expands to gigabytes


def setting(default: Any, low: float, high: float, *, above: bool = False) -> Any:
    """A numeric config field whose values must lie in [low, high] (``above``: in (low, high])."""
    return field(default=default, metadata={"range": (low, high, above)})


@dataclass(frozen=True)
class TrainingConfig:
    mode: str = "encoder"  # what is cached and trained: logits | encoder | full
    learning_rate: float = setting(6e-4, 0, 1.0, above=True)  # AdamW (docs/decisions.md)
    accumulation_steps: int = setting(4, 1, 1000)  # corrections per optimizer update
    inner_steps: int = setting(3, 1, 100)  # optimizer steps on each accumulated batch (from the cache)
    max_cache_size: int = setting(100, 1, 100_000)  # cached interactions kept in memory
    freeze_encoder: bool = True  # full mode only: train the encoder too when false
    lora_rank: int = setting(32, 1, 512)
    lora_alpha: float = setting(32.0, 0, 10_000.0, above=True)
    # Not self-attention: it wrote learned names over ordinary words ("Press star" -> "Przor" on human
    # speech). Not cross_attn.key/value: their projections of the cached audio are then computed once
    # per window, a cheaper update (docs/decisions.md).
    lora_targets: tuple[str, ...] = ("cross_attn.query", "cross_attn.out", "mlp.0", "mlp.2")
    head_rank: int = setting(16, 1, 512)  # logits mode: rank of the residual on the final hidden state
    head_learning_rate: float = setting(3e-3, 0, 1.0, above=True)  # logits mode: the head adapter needs ~10x the LoRA's rate
    grad_clip: float = setting(1.0, 0, 1e6, above=True)
    weight_decay: float = setting(0.0, 0, 1.0)
    kl_weight: float = setting(0.0, 0, 100.0)  # KL to the base model on positions the user did not correct
    replay_size: int = setting(16, 0, 10_000)  # earlier corrections kept for replay
    replay_per_step: int = setting(8, 0, 10_000)  # of them mixed into each update (more replay: less forgetting, fewer false insertions)
    canary_size: int = setting(4, 0, 1000)  # accepted utterances checked before and after each update
    canary_tolerance: float = setting(0.25, 0, 100.0)  # roll back when their loss rises by more (nats/token)
    min_similarity: float = setting(0.3, 0, 1.0)  # refuse "corrections" further than this from the hypothesis
    # An accepted transcript that holds a learned term is learned from (riding along with the
    # next batch of corrections), not kept as a canary: a term learned early otherwise got fewer
    # training sentences, since later ones came out right and were only accepted (docs/decisions.md).
    learn_confirmed: bool = True
    cache_dtype: str = "float16"  # float16 halves the cache; float32 for exactness tests


@dataclass(frozen=True)
class DecodingConfig:
    language: str = "en"
    beam_size: int | None = setting(None, 1, 32)  # None: greedy
    # On CPU, the decoder's output projection (51,864 logits a token) in int8 while decoding: 5.6x
    # less time for that product, the same tokens on 61 benchmark clips, learning results within
    # seed noise (projection.py, docs/decisions.md); false (and bf16_encoder false) decodes exactly
    # as openai-whisper does.
    int8_projection: bool = True
    # On a CPU with AMX (bf16 matrix tiles), the encoder's products in bf16: a third of fp32's
    # time for the encoder, which is most of a short utterance's decoding; WER and learning within
    # seed noise (docs/decisions.md). False, or any other CPU: fp32, as openai-whisper computes it.
    bf16_encoder: bool = True
    glossary: bool = True  # a third reading: the base model prompted with the learned terms (docs/guard.md)
    glossary_max_terms: int = setting(24, 0, 200)
    # A taught term leaves the glossary reading's prompt once the adapter itself wrote it in this
    # many sentences the user accepted since its last correction: the weights hear it, and the
    # prompted reading only added cost and insertions (docs/decisions.md). None: never.
    glossary_drop_after: int | None = setting(2, 1, 1000)
    no_speech_threshold: float = setting(0.6, 0, 1.0)
    # The adapter's words stand only where they agree with the base model or write a learned term
    # (guard.py): once the adapter has been updated, each window is decoded as a batch of two
    # (with and without the adapter).
    term_guard: bool = True
    # ...and a learned term only if each of its tokens was picked with at least this log-probability:
    # whole terms written over sound-alikes were less sure (docs/decisions.md).
    term_min_logprob: float = setting(-1.25, -100.0, 0)
    # ...and never over base-model words whose every token it picked with at least this
    # log-probability: a sure base model heard a word it knows ("Seth", "Granny").
    base_sure_logprob: float = setting(-0.3, -100.0, 0)
    # ...except over the very words a correction of the term replaced ("Valero" for Velero): the
    # user said those were the term, so the base model's sureness does not count there and the
    # term needs only this log-probability (docs/decisions.md).
    misheard_min_logprob: float = setting(-2.0, -100.0, 0)
    compression_ratio_threshold: float = setting(2.4, 0, 100.0, above=True)  # above: a repetition loop; that window is decoded again without the adapter
    silence_dbfs: float = setting(-50.0, -200.0, 0)  # quieter than this everywhere: nothing was said
    max_audio_seconds: float = setting(3600.0, 0, 86_400.0, above=True)  # longer files are refused from their header, before decoding (audio.py)


@dataclass(frozen=True)
class Config:
    model: str = "tiny.en"
    device: str | None = None  # None: CUDA when available, else CPU
    training: TrainingConfig = field(default_factory=TrainingConfig)
    decoding: DecodingConfig = field(default_factory=DecodingConfig)

    def __post_init__(self):
        for section in (self.training, self.decoding):
            _check_ranges(section, "training" if section is self.training else "decoding")
        t = self.training
        if t.mode not in MODES:
            raise ConfigError(f"training.mode must be one of {', '.join(MODES)}, got {_shown(t.mode)}")
        unknown = [name for name in t.lora_targets if name not in LORA_TARGETS]
        if not t.lora_targets or unknown:
            raise ConfigError(f"training.lora_targets must name one or more of {', '.join(LORA_TARGETS)}, got {_shown(list(t.lora_targets))}")
        if t.max_cache_size < t.accumulation_steps:
            raise ConfigError("training.max_cache_size must be >= training.accumulation_steps")
        if t.cache_dtype not in ("float16", "float32"):
            raise ConfigError(f"training.cache_dtype must be float16 or float32, got {_shown(t.cache_dtype)}")
        if self.device is not None and not re.fullmatch(r"cpu|cuda(:\d+)?", str(self.device)):
            raise ConfigError(f"device must be cpu, cuda or cuda:N, got {_shown(self.device)}")


def _check_ranges(section: Any, prefix: str) -> None:
    for f in dataclasses.fields(section):
        value = getattr(section, f.name)
        if "range" not in f.metadata or value is None:
            continue
        low, high, above = f.metadata["range"]
        inside = math.isfinite(value) and (low < value if above else low <= value) and value <= high
        if not inside:
            bounds = f"{'(' if above else '['}{low:g}, {high:g}]"
            raise ConfigError(f"{prefix}.{f.name} must be in {bounds}, got {_shown(value)}")


_SHORT = reprlib.Repr()
_SHORT.maxstring = _SHORT.maxother = 60


def _shown(value: Any) -> str:
    """``value`` for an error message, cut short: a config value can be huge."""
    return _SHORT.repr(value)


def _coerce(where: str, kind: Any, value: Any) -> Any:
    """``value`` checked against the annotation ``kind``, with YAML's looseness (1 for 1.0)."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        return _coerce(where, next(a for a in args if a is not type(None)), value)
    if origin is tuple:
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{where} must be a list of names, got {_shown(value)}")
        return tuple(value)
    if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if kind is bool and isinstance(value, bool) or kind is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if kind is str and isinstance(value, str):
        return value
    names = {float: "a number", int: "an integer", bool: "true or false", str: "a string"}
    raise ConfigError(f"{where} must be {names.get(kind, kind)}, got {_shown(value)}")


def _build(cls: type, values: dict, prefix: str) -> Any:
    if not isinstance(values, dict):
        raise ConfigError(f"{prefix or 'config'} must be a mapping of keys to values, got {_shown(values)}")
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
        values = _read_yaml(Path(source))
    if not isinstance(values, dict):
        raise ConfigError(f"config must be a mapping of keys to values, got {_shown(values)}")
    nested: dict = {}
    for key, value in overrides.items():
        if value is not None:
            section = _section_of(key)
            (nested.setdefault(section, {}) if section else nested)[key] = value
    return _build(Config, _merge(values, nested), "")


def _read_yaml(path: Path) -> Any:
    """The YAML file at ``path``: size-capped, aliases bounded, and ``1e-5`` read as a number."""
    import yaml

    class Loader(yaml.SafeLoader):
        aliases = 0

        def compose_node(self, parent, index):
            if self.check_event(yaml.AliasEvent):
                self.aliases += 1
                if self.aliases > MAX_YAML_ALIASES:
                    raise ConfigError(f"config {path} uses more than {MAX_YAML_ALIASES} YAML aliases; write the values out")
            return super().compose_node(parent, index)

    # YAML 1.1 wants a dot in a float ("1.0e-5"); people write 1e-5, and YAML 1.2 reads it as a number.
    Loader.add_implicit_resolver("tag:yaml.org,2002:float", re.compile(r"^[-+]?(?:\d+\.?\d*|\.\d+)[eE][-+]?\d+$"), list("-+0123456789."))
    try:
        if path.stat().st_size > MAX_CONFIG_BYTES:
            raise ConfigError(f"config {path} is {path.stat().st_size:,} bytes, over the limit of {MAX_CONFIG_BYTES:,}: is it the right file?")
        return yaml.load(path.read_text(), Loader=Loader) or {}
    except OSError as error:
        raise ConfigError(f"cannot read config {path}: {error.strerror or error}") from None
    except (yaml.YAMLError, UnicodeDecodeError, RecursionError) as error:
        raise ConfigError(f"config {path} is not valid YAML: {str(error).splitlines()[0] if str(error) else type(error).__name__}") from None


def to_yaml_dict(config: Config) -> dict:
    values = dataclasses.asdict(config)
    values["training"]["lora_targets"] = list(values["training"]["lora_targets"])
    return values
