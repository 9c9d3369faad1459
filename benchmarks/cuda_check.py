#!/usr/bin/env python
"""The GPU path checked against the CPU path: same clips, same corrections, same seed.

    python benchmarks/cuda_check.py               # needs a CUDA GPU; about a minute on an H200
    python benchmarks/cuda_check.py --gpu cpu     # try the script where there is none

* decoding: what fp16 decoding on the GPU reads, against fp32 on the CPU, for every clip in
  tests/data;
* the update's arithmetic: the three Kubernetes corrections (benchmarks/cost.py) scored from one
  shared cache (the CPU's) on the CPU, on the GPU as shipped (fp32), and on the GPU in fp16 (the
  cache's dtype, no loss scaling): each loss's relative difference to the CPU's, the cosine of the
  adapter gradients, and gradient entries non-finite or flushed to zero;
* learning, as a user runs it: each agent decodes the clips itself, learns the corrections in one
  update, and reads the clips again (and three it was never corrected on); how far its adapter
  lies from the CPU-trained one;
* the term guard's two readings decoded as one batch of two, against two decoder passes, on the
  clips, after the update (on the GPU in fp16, as it decodes);
* GPU memory: the model, one cached interaction, and the peak while learning.

Results: benchmarks/results/cuda_check.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import torch
from cost import CANARY_CLIPS, CLIPS, DATA, RESULTS, machine_info, reset_pending

from ffasr_cli import ASRAgent
from ffasr_cli.audio import load_audio
from ffasr_cli.capture import Window, encode
from ffasr_cli.modes import EncoderMode

VARIANTS = ("cpu", "cuda", "cuda_fp16")  # cuda_fp16: the update in the cache's fp16, as before the fix


def make_agent(variant: str, gpu: str) -> ASRAgent:
    agent = ASRAgent(accumulation_steps=len(CLIPS), device="cpu" if variant == "cpu" else gpu, seed=0)
    if variant == "cuda_fp16":
        assert isinstance(agent.mode, EncoderMode)  # the default mode, whose update reads the cached features
        agent.mode.audio_features = lambda targets: torch.stack([t.window.audio_features for t in targets]).half()
    return agent


def gradients(agent: ASRAgent) -> torch.Tensor:
    return torch.cat([p.grad.detach().float().cpu().ravel() for p in agent.learner.trainable.values() if p.grad is not None])


def on(device: str, windows) -> tuple:
    return tuple(dataclasses.replace(w, audio_features=w.audio_features.to(device)) for w in windows)


def update_arithmetic(agents: dict[str, ASRAgent]) -> dict:
    """The corrections scored from the CPU's cache on every variant; the CPU's numbers are the reference."""
    cpu = agents["cpu"]
    shared = [cpu.cache.get(cpu.infer(DATA / wav)[1]).windows for wav, _ in CLIPS]
    losses, grads = {}, {}
    for name, agent in agents.items():
        ids = [agent.cache.add(on(agent.device, w)).cache_id for w in shared]
        losses[name] = [float(agent.compute_loss_from_cache(i, label)) for i, (_, label) in zip(ids, CLIPS)]
        grads[name] = gradients(agent)
        reset_pending(agent)
        agent.cache.discard(ids)
    ref, ref_grad = losses["cpu"], grads["cpu"]
    return {
        name: {
            "losses": losses[name],
            "max_relative_loss_difference": max(abs(a - b) / abs(b) for a, b in zip(losses[name], ref)),
            "gradient_cosine": float(torch.nn.functional.cosine_similarity(grads[name], ref_grad, dim=0)),
            "gradient_relative_difference": float((grads[name] - ref_grad).norm() / ref_grad.norm()),
            "gradient_entries": ref_grad.numel(),
            "non_finite": int((~torch.isfinite(grads[name])).sum()),
            "flushed_to_zero": int(((grads[name] == 0) & (ref_grad != 0)).sum()),
        }
        for name in agents
    }


def learning(agents: dict[str, ASRAgent]) -> dict:
    """Each agent decodes, learns the three corrections in one update, and reads the clips again."""
    out = {}
    for name, agent in agents.items():
        cuda = agent.device.startswith("cuda")
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        heard = []
        for wav, label in CLIPS:
            text, cache_id = agent.infer(DATA / wav)
            heard.append(text)
            agent.compute_loss_from_cache(cache_id, label)
        started = time.perf_counter()
        assert agent.step_if_ready()
        if cuda:
            torch.cuda.synchronize()
        out[name] = {
            "heard": heard,
            "step_seconds": time.perf_counter() - started,
            "rolled_back": agent.last_update.rolled_back,
            "loss": agent.last_update.loss,
            "read_after": {wav: agent.infer(DATA / wav, cache_logits=False) for wav in [w for w, _ in CLIPS] + list(CANARY_CLIPS)},
            "adapter": agent.learner.adapter_state(),
            "guard_batch": guard_batch(agent),
        }
        if cuda:
            out[name]["peak_cuda_bytes"] = torch.cuda.max_memory_allocated()
    adapters = {name: torch.cat([t.ravel() for t in result.pop("adapter").values()]) for name, result in out.items()}
    for name, result in out.items():
        result["adapter_relative_difference_to_cpu"] = float((adapters[name] - adapters["cpu"]).norm() / adapters["cpu"].norm())
        result["writes_kubernetes"] = sum("Kubernetes" in result["read_after"][wav] for wav, _ in CLIPS)
    return out


def guard_batch(agent: ASRAgent) -> dict:
    """The adapted and base readings of every clip, as one batch of two and as two passes: same tokens?"""
    options = agent.reader.options(None)
    clips = sorted(DATA.glob("*.wav"))
    differ = []
    for clip in clips:
        encoded = encode(agent.model, load_audio(clip), options.fp16)
        batched = Window(agent.model, *encoded, agent.reader.cache_dtype).decode_with_base(options, None)
        apart = Window(agent.model, *encoded, agent.reader.cache_dtype).decode_apart(options, None)
        differ += [{"clip": clip.name, "batched": b.text, "apart": a.text} for b, a in zip(batched, apart) if b.tokens != a.tokens]
    return {"readings": 2 * len(clips), "different": differ}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=RESULTS / "cuda_check.json")
    ap.add_argument("--gpu", default="cuda", help="the device checked against the CPU (cpu: a dry run of this script)")
    args = ap.parse_args()
    cuda = args.gpu.startswith("cuda")
    if cuda and not torch.cuda.is_available():
        sys.exit("cuda_check: no CUDA GPU on this machine (--gpu cpu runs the script on the CPU)")
    started = time.perf_counter()
    agents = {name: make_agent(name, args.gpu) for name in VARIANTS}
    result = {"machine": machine_info(torch.get_num_threads()), "gpu": args.gpu}
    if cuda:
        result["model_cuda_bytes_each"] = torch.cuda.memory_allocated() / 2  # two agents on the GPU

    clips = sorted(DATA.glob("*.wav"))
    readings = {name: [agents[name].infer(c, cache_logits=False) for c in clips] for name in VARIANTS[:2]}
    result["decoding"] = {
        "clips": len(clips),
        "same_text": sum(a == b for a, b in zip(readings["cpu"], readings["cuda"])),
        "different": [{"clip": c.name, "cpu": a, "cuda": b} for c, a, b in zip(clips, readings["cpu"], readings["cuda"]) if a != b],
    }
    gpu = agents["cuda"]
    _, cache_id = gpu.infer(DATA / CLIPS[0][0])
    result["cache_entry_bytes"] = gpu.cache.get(cache_id).nbytes
    gpu.cache.discard([cache_id])
    result["update_arithmetic"] = update_arithmetic(agents)
    result["learning"] = learning(agents)
    result["wall_seconds"] = time.perf_counter() - started

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "machine"}, indent=1))


if __name__ == "__main__":
    main()
