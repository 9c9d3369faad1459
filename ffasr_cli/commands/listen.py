"""``ffasr listen``: live microphone sessions (being written)."""

from __future__ import annotations

from ..errors import FfasrError
from .common import reports_errors


@reports_errors
def listen() -> None:
    """Record from the microphone, transcribe, take corrections and learn."""
    raise FfasrError("listen is not available yet")
