"""The one cache: what decoding kept, per interaction, until a correction and an update use it."""

from __future__ import annotations

import logging
import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass

from .capture import WindowCapture

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CacheEntry:
    """One interaction: its windows (one per 30 s of audio) and the text shown to the user."""

    cache_id: str
    windows: tuple[WindowCapture, ...]

    @property
    def text(self) -> str:
        return " ".join(w.text for w in self.windows if w.text).strip()

    @property
    def base_text(self) -> str:
        """What the base model read (the term guard's base reading; before an update, ``text``'s reading)."""
        return " ".join(w.base_text for w in self.windows if w.base_text).strip()

    @property
    def nbytes(self) -> int:
        return sum(w.nbytes for w in self.windows)


class InteractionCache:
    """Bounded, insertion-ordered; the oldest entry is evicted (with a warning) when full."""

    def __init__(self, max_size: int):
        self.max_size = max_size
        self.entries: OrderedDict[str, CacheEntry] = OrderedDict()
        self.evicted = 0
        self._lock = threading.Lock()  # decoding adds entries while a learner in another thread discards them

    def add(self, windows: tuple[WindowCapture, ...], cache_id: str | None = None) -> CacheEntry:
        entry = CacheEntry(cache_id or uuid.uuid4().hex[:12], windows)
        with self._lock:
            self.entries[entry.cache_id] = entry
            while len(self.entries) > self.max_size:
                old_id, old = self.entries.popitem(last=False)
                self.evicted += 1
                log.warning("cache full (%d entries): evicted %s (%d bytes)", self.max_size, old_id, old.nbytes)
        return entry

    def get(self, cache_id: str) -> CacheEntry | None:
        with self._lock:
            return self.entries.get(cache_id)

    def discard(self, cache_ids) -> None:
        with self._lock:
            for cache_id in cache_ids:
                self.entries.pop(cache_id, None)

    def __len__(self) -> int:
        return len(self.entries)

    def __contains__(self, cache_id: str) -> bool:
        return cache_id in self.entries

    @property
    def nbytes(self) -> int:
        return sum(entry.nbytes for entry in self.entries.values())
