"""ffasr: a local Whisper that learns from your corrections, without re-running the audio."""

__version__ = "0.1.0"
__all__ = ["ASRAgent", "__version__"]


def __getattr__(name: str):
    # Lazy, so that `ffasr --help` and `ffasr stats` never import torch or whisper.
    if name == "ASRAgent":
        from .agent import ASRAgent

        return ASRAgent
    raise AttributeError(f"module 'ffasr_cli' has no attribute {name!r}")
