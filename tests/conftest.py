"""Shared fixtures: the real offline tiny.en, real clips, and decoding done once per session.

Decoding is the slow part on a CPU, so what an update needs from each clip (the cache entry's
windows) is computed once per (mode, cache dtype, clip) by a session agent that is never trained,
and handed to fresh agents, which add it to their own cache as if they had decoded the clip
themselves. The encoder output and the mel do not depend on the adapter, and a fresh adapter
changes nothing, so the windows are exactly what the fresh agent's own ``infer`` would cache.
"""

from __future__ import annotations

import os
from pathlib import Path

# The suite shares two CPU cores with other processes: one intra-op thread each is several times
# faster than threads that wait on each other (measured: an update 0.6 s instead of 10 s).
# Set OMP_NUM_THREADS to override. Before torch is imported.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
from hypothesis import settings  # noqa: E402

# Property tests share the CPU with the model's tests and other processes: a wall-clock deadline
# per example measures that load, not the code (the guard's tests failed at 200 ms on a busy machine).
settings.register_profile("ffasr", deadline=None)
settings.load_profile("ffasr")

DATA = Path(__file__).parent / "data"

TEXTS = {
    "kubernetes_deploy": "Deploy the new service to Kubernetes tonight.",
    "kubernetes_cluster": "Our Kubernetes cluster ran out of memory again.",
    "kubernetes_dashboard": "Please restart the Kubernetes dashboard before lunch.",
    "weather": "The weather is nice today, let's go for a walk.",
    "spelled_zbigniew": "No, I said Zbigniew. Z, B, I, G, N, I, E, W.",
    "librivox_ill_disposed": "he was not an ill disposed young man",
    "librivox_amiable": "he might even have been made amiable himself",
}


def clip(name: str) -> Path:
    return DATA / f"{name}.wav"


class Captures:
    """Session agents (one per mode and cache dtype, never trained) and the windows they cached."""

    def __init__(self):
        self.agents: dict = {}
        self.memo: dict = {}

    def agent(self, mode: str = "encoder", dtype: str = "float16"):
        from ffasr_cli import ASRAgent

        if (mode, dtype) not in self.agents:
            self.agents[mode, dtype] = ASRAgent(mode=mode, cache_dtype=dtype, accumulation_steps=1)
        return self.agents[mode, dtype]

    def windows(self, mode: str, name: str, dtype: str = "float16"):
        key = (mode, name, dtype)
        if key not in self.memo:
            agent = self.agent(mode, dtype)
            text, cache_id = agent.infer(clip(name))
            assert cache_id is not None, f"{name}: nothing heard"
            self.memo[key] = agent.cache.get(cache_id).windows
            agent.cache.discard([cache_id])
        return self.memo[key]


@pytest.fixture(scope="session")
def captures() -> Captures:
    return Captures()


def add_entry(agent, windows) -> str:
    """Put windows decoded by a session agent into ``agent``'s cache; return the cache id."""
    return agent.cache.add(windows).cache_id


def trainable(agent) -> dict:
    return {name: p for name, p in agent.model.named_parameters() if p.requires_grad}


def weights(agent) -> dict:
    return {name: p.detach().clone() for name, p in trainable(agent).items()}


def same_weights(agent, saved: dict) -> bool:
    import torch

    now = trainable(agent)
    return now.keys() == saved.keys() and all(torch.equal(now[n].detach(), saved[n]) for n in saved)
