#!/usr/bin/env python
"""Cost of learning from a correction, per update mode (logits, encoder, full) and per model.

    python benchmarks/cost.py            # a few minutes on 1 CPU thread
    python benchmarks/cost.py --quick    # about a minute: fewer repeats, same measurements

Measures, on the same interactions (tests/data/kubernetes_*.wav, labels that fix "Kubernetes"):

* update cost: ``compute_loss_from_cache`` (loss from the cache + backward), as a ratio to the
  ``full`` mode (the re-run-the-audio baseline); the step (``step_if_ready`` + saving the adapter)
  on its own, and amortized over the N corrections it consumes;
* capture overhead: ``agent.infer`` (decoding + caching) vs whisper's own ``whisper.decode`` of the
  same audio on a plain model; the term guard (after an update: the base model's reading, in the
  same decoder batch as the adapter's) vs without it; the glossary's prompted reading (24 terms:
  one more decoder pass) vs the guard alone;
* memory: the peak RSS of one update, in a separate process per mode (``--child-memory MODE``);
* cache bytes per interaction and for a full cache, and what raw [T, V] fp32 logits would cost;
* latency from "correction given" to "ready for the next utterance" (no step), real-time factor;
* start-up of ``ffasr --help`` and ``ffasr stats`` (no torch import allowed);
* where encoder-mode update time goes (torch.profiler).

Machines are noisy (shared cores): modes are interleaved round by round (the order rotates) and
every headline number is a median; ratios are medians of per-round ratios, so a slow spell hits
numerator and denominator alike. CPU time (``time.process_time``) is recorded next to wall time.
Results: benchmarks/results/cost.json, cost.png, cost_profile_<model>.txt.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
RESULTS = Path(__file__).resolve().parent / "results"
MODES = ("logits", "encoder", "full")

CLIPS = (  # tiny.en mishears "Kubernetes" in all three (tests/data/README.md)
    ("kubernetes_deploy.wav", "Deploy the new service to Kubernetes tonight."),
    ("kubernetes_cluster.wav", "Our Kubernetes cluster ran out of memory again."),
    ("kubernetes_dashboard.wav", "Please restart the Kubernetes dashboard before lunch."),
)
CANARY_CLIPS = ("weather.wav", "librivox_ill_disposed.wav", "librivox_amiable.wav")  # accepted as heard
GLOSSARY = (
    "Kubernetes", "kubectl", "etcd", "Helm", "Istio", "Prometheus", "Grafana", "Terraform",
    "Ansible", "PostgreSQL", "Redis", "Kafka", "Elasticsearch", "Nginx", "systemd", "Jenkins",
    "GitLab", "OAuth", "gRPC", "WebAssembly", "Cassandra", "RabbitMQ", "Envoy", "Argo CD",
)  # fmt: skip

TARGETS = {  # name: (limit, unit, "<=" or "<")
    "update_ratio.encoder": (0.12, "x full", "<="),
    "update_ratio.logits": (0.02, "x full", "<="),
    "capture_overhead": (1.05, "x whisper", "<="),
    "glossary_overhead": (1.5, "x guarded", "<="),  # the prompted reading: one more decoder pass
    "guard_overhead": (1.5, "x unguarded", "<="),  # a decoder batch of two instead of one, no encoder pass
    "latency": (0.3, "s", "<="),
    "step": (2.0, "s", "<="),
    "logits_cache_bytes": (64 * 1024, "B", "<="),
    "startup": (0.5, "s", "<"),
}


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def rotated(items, r):
    items = list(items)
    k = r % len(items)
    return items[k:] + items[:k]


def _sync() -> None:
    """Wait for the GPU's queued work, so that a timer sees it (nothing to wait for on CPU)."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


class Timer:
    """Wall and process-CPU seconds of a block (GPU work included)."""

    def __enter__(self):
        _sync()
        self.wall0, self.cpu0 = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        _sync()
        self.wall = time.perf_counter() - self.wall0
        self.cpu = time.process_time() - self.cpu0


def interleaved(variants: dict, samples: list, rounds: int) -> tuple[dict, dict]:
    """Every variant on every sample, ``rounds`` times, in an order that rotates by round and sample.

    Returns {variant: [(round, sample, wall, cpu)]} and {(variant, sample): what it returned}.
    """
    times = {k: [] for k in variants}
    texts = {}
    for r in range(rounds):
        for c, x in enumerate(samples):
            for name in rotated(variants, r + c):
                with Timer() as t:
                    texts[(name, c)] = variants[name](x)
                times[name].append((r, c, t.wall, t.cpu))
    return times, texts


# --------------------------------------------------------------------------- machine


def machine_info(threads: int) -> dict:
    import torch
    import whisper

    from ffasr_cli.capture import bf16_available

    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "amx": bf16_available(torch.device("cpu")),  # bf16 matrix tiles: decoding.bf16_encoder applies
        "threads": threads,
        "loadavg_at_start": load,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "whisper": getattr(whisper, "__version__", "?"),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
    }


def models_on_disk() -> list[str]:
    from ffasr_cli.models import offline_names

    offline = offline_names()
    return [name for name in ("tiny.en", "base.en", "base") if name in offline]


# --------------------------------------------------------------------------- start-up


def startup(reps: int) -> dict:
    """Wall time of ``ffasr --help`` / ``ffasr stats`` in a fresh process, and whether torch loaded."""
    exe = Path(sys.executable).parent / "ffasr"
    probe = (
        "import sys, json\n"
        "sys.argv = ['ffasr'] + sys.argv[1:]\n"
        "from ffasr_cli.cli import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "sys.stderr.write('\\n@@' + json.dumps({m: m in sys.modules for m in ('torch', 'whisper', 'numpy')}))\n"
    )
    out = {}
    with tempfile.TemporaryDirectory() as home:  # an empty store, not the user's
        env = dict(os.environ, FFASR_HOME=home)
        for args in (["--help"], ["stats"]):
            key = " ".join(["ffasr", *args])
            cmd = [str(exe), *args] if exe.exists() else [sys.executable, "-c", "from ffasr_cli.cli import main; main()", *args]
            first = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
            if first.returncode != 0:
                reason = (first.stderr.strip().splitlines() or first.stdout.strip().splitlines() or ["?"])[-1]
                out[key] = {"seconds": None, "status": "n/a", "reason": f"exit {first.returncode}: {reason[:200]}"}
                continue
            times, cpu = [], []
            for _ in range(reps):
                t0, c0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
                subprocess.run(cmd, capture_output=True, env=env, timeout=120)
                c1 = resource.getrusage(resource.RUSAGE_CHILDREN)
                times.append(time.perf_counter() - t0)
                cpu.append(c1.ru_utime + c1.ru_stime - c0.ru_utime - c0.ru_stime)  # robust to busy cores
            imported = subprocess.run([sys.executable, "-c", probe, *args], capture_output=True, text=True, env=env, timeout=120)
            modules = json.loads(imported.stderr.rsplit("@@", 1)[1]) if "@@" in imported.stderr else {}
            out[key] = {"seconds": median(times), "cpu_seconds": median(cpu), "all": times, "imports": modules, "status": "ok"}
    return out


# --------------------------------------------------------------------------- memory (child process)


def _status_kb(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak() -> bool:
    """Trim malloc's free lists back to the OS and reset the peak RSS (VmHWM) of this process."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _peak_around(fn) -> dict:
    """Peak resident memory above the starting point while ``fn`` runs (bytes)."""
    import torch

    cuda = torch.cuda.is_available()
    exact = _reset_peak()
    rss0, maxrss0 = _status_kb("VmRSS"), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        cuda0 = torch.cuda.memory_allocated()
    fn()
    hwm, maxrss1 = _status_kb("VmHWM"), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = {
        "rss_before": rss0 * 1024 if rss0 else None,
        "peak_delta": (hwm - rss0) * 1024 if exact and hwm and rss0 else None,
        "ru_maxrss_delta": (maxrss1 - maxrss0) * 1024,  # coarse: only counts a new process-wide peak
        "method": "VmHWM after clear_refs=5 (malloc_trim, mmap threshold 64 KiB)" if exact else "ru_maxrss",
    }
    if result["peak_delta"] is None:
        result["peak_delta"] = result["ru_maxrss_delta"]
    if cuda:
        torch.cuda.synchronize()
        result["cuda_peak_delta"] = torch.cuda.max_memory_allocated() - cuda0
    return result


def child_memory(mode: str, model: str, device: str | None, threads: int, n: int, with_step: bool) -> dict:
    import torch

    torch.set_num_threads(threads)
    from ffasr_cli.agent import ASRAgent

    agent = ASRAgent(model, accumulation_steps=n, mode=mode, device=device, seed=0)
    wav, label = CLIPS[0]
    _, cache_id = agent.infer(str(DATA / wav))
    entry = agent.cache.get(cache_id)

    agent.compute_loss_from_cache(cache_id, label)  # warm-up (lazy inits), then back to "no grads"
    reset_pending(agent)
    out = {"mode": mode, "model": model, "rss_after_setup": (_status_kb("VmRSS") or 0) * 1024}
    out["update"] = _peak_around(lambda: agent.compute_loss_from_cache(cache_id, label))
    reset_pending(agent)
    if not with_step:
        return out
    ids = [agent.cache.add(entry.windows).cache_id for _ in range(n)]

    def step():
        for cid in ids:
            agent.compute_loss_from_cache(cid, label)
        agent.step_if_ready()

    out["step"] = _peak_around(step)
    return out


def memory(model: str, device: str | None, threads: int, n: int, with_step: bool) -> dict:
    out = {}
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", MALLOC_TRIM_THRESHOLD_="65536")
    procs = {}  # one process per mode, run side by side: each measures only its own pages
    for mode in MODES:
        cmd = [sys.executable, __file__, "--child-memory", mode, "--model", model, "--threads", str(threads), "-n", str(n)]
        cmd += ([] if with_step else ["--quick"]) + (["--device", device] if device else [])
        procs[mode] = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    for mode, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=600)
        line = [ln for ln in stdout.splitlines() if ln.startswith("@@")]
        if proc.returncode != 0 or not line:
            out[mode] = {"error": (stderr.strip().splitlines() or ["?"])[-1]}
            continue
        out[mode] = json.loads(line[-1][2:])
    key = "cuda_peak_delta" if device == "cuda" else "peak_delta"  # on a GPU its memory is what runs out
    for part in ("update", "step"):
        full = out.get("full", {}).get(part, {}).get(key)
        for mode in MODES:
            d = out[mode].get(part)
            if d and full:
                d["ratio_to_full"] = d[key] / full
    return out


# --------------------------------------------------------------------------- in-process measurements


def reset_pending(agent) -> None:
    agent.learner.pending, agent.learner.accumulated = [], 0
    agent.learner.optimizer.zero_grad(set_to_none=True)


def decoding(agents, plain, samples, rounds: int) -> dict:
    """Capture overhead (agent.infer vs whisper.decode), glossary-prompt and term-guard overheads, interleaved."""
    import torch
    import whisper
    from whisper.decoding import DecodingOptions

    options = DecodingOptions(language="en", without_timestamps=True, fp16=plain.device.type != "cpu")  # as the agent decodes
    enc = agents["encoder"]

    def whisper_decode(x):
        mel = whisper.log_mel_spectrogram(whisper.pad_or_trim(torch.from_numpy(x)).to(plain.device))
        return whisper.decode(plain, mel, options).text

    def guarded(x, glossary=()):
        # as after an update: the guard decodes a batch of two (with and without the adapter), and
        # with a glossary once more, prompted (what the adapter learned does not change the cost)
        enc.reader.learned, enc.reader.glossary = dataclasses.replace(enc.reader.learned, steps=1), list(glossary)
        try:
            return enc.infer(x, cache_logits=False)
        finally:
            enc.reader.learned, enc.reader.glossary = dataclasses.replace(enc.reader.learned, steps=0), []

    def with_glossary(x):
        return guarded(x, GLOSSARY)

    variants = {"whisper": whisper_decode}
    for mode, agent in agents.items():
        variants[f"infer.{mode}"] = lambda x, a=agent: a.infer(x)[0]
    variants["infer.encoder.nocache"] = lambda x: enc.infer(x, cache_logits=False)
    variants["infer.encoder.glossary"] = with_glossary
    variants["infer.encoder.guarded"] = guarded

    variants["whisper"](samples[0])  # warm-up (first-call costs are per process, not per variant)
    variants["infer.encoder"](samples[0])
    times, texts = interleaved(variants, samples, rounds)
    for agent in agents.values():  # the infers above filled the caches: empty them
        agent.cache.entries.clear()

    def paired(name, base, k):
        ref = {(r, c): (w, u) for r, c, w, u in times[base]}
        return median([(w, u)[k] / ref[(r, c)][k] for r, c, w, u in times[name]])

    out = {"seconds": {k: median([t[2] for t in v]) for k, v in times.items()}}
    out["cpu_seconds"] = {k: median([t[3] for t in v]) for k, v in times.items()}
    out["ratio_to_whisper"] = {k: paired(k, "whisper", 0) for k in variants if k != "whisper"}
    out["cpu_ratio_to_whisper"] = {k: paired(k, "whisper", 1) for k in variants if k != "whisper"}
    out["glossary_ratio"] = paired("infer.encoder.glossary", "infer.encoder.guarded", 0)
    out["glossary_cpu_ratio"] = paired("infer.encoder.glossary", "infer.encoder.guarded", 1)
    out["guard_ratio"] = paired("infer.encoder.guarded", "infer.encoder.nocache", 0)
    out["guard_cpu_ratio"] = paired("infer.encoder.guarded", "infer.encoder.nocache", 1)
    out["same_text_as_whisper"] = all(
        texts[(f"infer.{m}", c)] == texts[("whisper", c)] for m in agents for c in range(len(samples))
    )
    out["glossary_texts"] = [texts[("infer.encoder.glossary", c)] for c in range(len(samples))]
    out["samples"] = len(times["whisper"])
    return out


def cache_sizes(agents, samples, max_cache_size: int) -> tuple[dict, dict]:
    """Bytes kept per interaction, per mode; returns (sizes, {mode: [cache ids per clip]})."""
    ids, sizes = {}, {}
    for mode, agent in agents.items():
        entries = [agent.cache.get(agent.infer(x)[1]) for x in samples]
        ids[mode] = [e.cache_id for e in entries]
        per = [e.nbytes for e in entries]
        positions = [sum(len(w.tokens) + 1 for w in e.windows) for e in entries]
        n_vocab = agent.model.dims.n_vocab
        sizes[mode] = {
            "per_interaction": statistics.mean(per),
            "per_interaction_each": per,
            "full_cache": statistics.mean(per) * max_cache_size,
            "max_cache_size": max_cache_size,
            "dtype": agent.config.training.cache_dtype,
        }
        sizes["raw_logits_fp32"] = {  # the original write-up's [B, T, V] fp32 logits, T = decoded positions
            "per_interaction": statistics.mean(p * n_vocab * 4 for p in positions),
            "full_cache": statistics.mean(p * n_vocab * 4 for p in positions) * max_cache_size,
            "positions": positions,
            "n_vocab": n_vocab,
        }
    return sizes, ids


def update_cost(agents, ids, rounds: int, warmup: int = 2) -> dict:
    """compute_loss_from_cache (no step) per mode, interleaved; ratios to full per round."""
    labels = [label for _, label in CLIPS]
    for mode, agent in agents.items():
        for _ in range(warmup):
            for cid, label in zip(ids[mode], labels):
                agent.compute_loss_from_cache(cid, label)
            reset_pending(agent)
    samples = {m: [] for m in agents}  # (round, wall, cpu)
    losses = {}
    for r in range(rounds):
        for mode in rotated(agents, r):
            agent = agents[mode]
            for cid, label in zip(ids[mode], labels):
                with Timer() as t:
                    loss = agent.compute_loss_from_cache(cid, label)
                samples[mode].append((r, t.wall, t.cpu))
                losses.setdefault(mode, []).append(float(loss))
            reset_pending(agent)

    def per_round(mode, k):
        sums = {}
        for r, *v in samples[mode]:
            sums[r] = sums.get(r, 0.0) + v[k]
        return sums

    out = {"seconds": {}, "cpu_seconds": {}, "ratio_to_full": {}, "cpu_ratio_to_full": {}, "ratio_of_medians": {}}
    full_wall, full_cpu = per_round("full", 0), per_round("full", 1)
    for mode in agents:
        out["seconds"][mode] = median([s[1] for s in samples[mode]])
        out["cpu_seconds"][mode] = median([s[2] for s in samples[mode]])
        wall, cpu = per_round(mode, 0), per_round(mode, 1)
        out["ratio_to_full"][mode] = median([wall[r] / full_wall[r] for r in wall])
        out["cpu_ratio_to_full"][mode] = median([cpu[r] / full_cpu[r] for r in cpu])
    for mode in agents:
        out["ratio_of_medians"][mode] = out["seconds"][mode] / out["seconds"]["full"]
    out["first_loss"] = {m: v[0] for m, v in losses.items()}
    out["samples_per_mode"] = len(samples["full"])
    return out


def _save_learner(files, agent, ids) -> None:
    """What a session saves after an update: the examples the learner names, then its checkpoint."""
    state = agent.learner.state_dict()
    files.save_examples(state["examples"], agent.identity())
    files.save_checkpoint(state, agent.identity(), list(ids))


def _files(tmp: str):
    """The session's own writers (adapter checkpoint, spilled correction), when the engine has them."""
    try:
        from ffasr_cli.state import ProfileFiles

        files = ProfileFiles(Path(tmp), "bench")
        return (
            lambda agent, ids: _save_learner(files, agent, ids),
            lambda agent, entry, label: files.spill(entry, label, agent.identity()),
        )
    except ImportError:  # older engine: a plain safetensors file of the adapter
        from safetensors.torch import save_file

        return (lambda agent, ids: save_file(agent.learner.adapter_state(), os.path.join(tmp, "adapter.safetensors")), None)


def steps(agents, ids, canary_ids, n: int, timed: int) -> dict:
    """step_if_ready (+ saving the checkpoint) per mode, after a warm-up step that fills the replay."""
    labels = [label for _, label in CLIPS]
    for agent, cids in ((agents[m], canary_ids[m]) for m in agents):
        reset_pending(agent)
        for cid in cids:
            agent.accept(cid)
    keys = ("step", "step_cpu", "save", "latency_pending", "spill", "rolled_back", "replayed")
    out = {m: {k: [] for k in keys} for m in agents}
    with tempfile.TemporaryDirectory() as tmp:
        save, spill = _files(tmp)
        for s in range(timed + 1):
            for mode in rotated(agents, s):
                agent = agents[mode]
                for i in range(n):
                    entry = agent.cache.get(ids[mode][i % len(ids[mode])])
                    fresh = agent.cache.add(entry.windows)  # a new interaction with the same capture
                    with Timer() as t:
                        agent.compute_loss_from_cache(fresh.cache_id, labels[i % len(labels)])
                    if spill:
                        with Timer() as t_spill:
                            spill(agent, fresh, labels[i % len(labels)])
                    if s:
                        out[mode]["latency_pending"].append(t.wall)
                        if spill:
                            out[mode]["spill"].append(t_spill.wall)
                with Timer() as t:
                    ran = agent.step_if_ready()
                assert ran
                with Timer() as ts:
                    save(agent, agent.last_update.corrections)
                if s:  # step 0 is the warm-up
                    out[mode]["step"].append(t.wall)
                    out[mode]["step_cpu"].append(t.cpu)
                    out[mode]["save"].append(ts.wall)
                    out[mode]["rolled_back"].append(agent.last_update.rolled_back)
                    out[mode]["replayed"].append(agent.last_update.replayed)
    summary = {}
    for mode, v in out.items():
        step, save_s = median(v["step"]), median(v["save"])
        summary[mode] = {
            "step_seconds": step,
            "step_cpu_seconds": median(v["step_cpu"]),
            "save_seconds": save_s,
            "step_plus_save": step + save_s,
            "amortized_per_correction": (step + save_s) / n,
            "latency_with_pending": median(v["latency_pending"]),
            "spill_seconds": median(v["spill"]),
            "rolled_back": v["rolled_back"],
            "replayed": v["replayed"],
            "canaries": len(agents[mode].learner.canaries),
            "steps_timed": len(v["step"]),
        }
    return summary


# --------------------------------------------------------------------------- profile


def profile_encoder(agent, ids, reps: int, path: Path) -> dict:
    """Where encoder-mode update time goes (torch.profiler)."""
    from torch.profiler import ProfilerActivity, profile

    labels = [label for _, label in CLIPS]
    entries = [agent.cache.get(cid) for cid in ids]
    targets = [agent.learner.example(e, label).targets[0] for e, label in zip(entries, labels)]
    mode, model = agent.mode, agent.model

    def engine(target):
        loss = mode.losses([target])[0]
        loss.backward()
        return loss

    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        for _ in range(reps):
            for target in targets:
                engine(target)
    agent.learner.optimizer.zero_grad(set_to_none=True)
    table = prof.key_averages(group_by_input_shape=True).table(
        sort_by="self_cpu_time_total", row_limit=20, max_name_column_width=34, max_shapes_column_width=70
    )
    events = prof.key_averages(group_by_input_shape=True)
    total = sum(e.self_cpu_time_total for e in events)

    def share(pred):
        return sum(e.self_cpu_time_total for e in events if pred(e)) / total

    def shapes(e):
        return str(e.input_shapes)

    n_vocab, n_audio = model.dims.n_vocab, model.dims.n_audio_ctx
    breakdown = {
        "vocab_projection (h @ E^T, fwd+bwd)": share(lambda e: e.key == "aten::mm" and str(n_vocab) in shapes(e)),
        "cross-attn K/V base projections over audio frames": share(
            lambda e: e.key in ("aten::mm", "aten::addmm") and f"[1500, {model.dims.n_text_state}], [{model.dims.n_text_state}, {model.dims.n_text_state}]".replace("1500", str(n_audio)) in shapes(e)
        ),
        "LoRA on cross-attn K/V over audio frames (mm+mul+add, fwd+bwd)": share(
            lambda e: e.key in ("aten::mm", "aten::mul", "aten::add") and str(n_audio) in shapes(e) and str(agent.config.training.lora_rank) in shapes(e)
            or e.key in ("aten::mul", "aten::add") and f"[1, {n_audio}, {model.dims.n_text_state}]" in shapes(e)
        ),
        "cross-attention SDPA (fwd+bwd)": share(lambda e: "scaled_dot_product" in e.key and str(n_audio) in shapes(e)),
    }
    # frames-sized work in the backward (LoRA grads) that the filters above may miss
    breakdown["everything else"] = max(0.0, 1.0 - sum(breakdown.values()))

    text = [f"# encoder-mode loss+backward, {reps}x{len(targets)} calls, torch.profiler (self CPU)\n", table, "\n# breakdown\n"]
    text += [f"{share_:6.1%}  {name}\n" for name, share_ in breakdown.items()]
    path.write_text("".join(text))
    return {"breakdown_self_cpu_share": breakdown, "profile_file": str(path.relative_to(ROOT))}


# --------------------------------------------------------------------------- one model


def profile_logits(agent, ids, reps: int) -> dict:
    """Logits mode: the share of the two vocabulary GEMMs (h·Eᵀ forward, G·E backward)."""
    from torch.profiler import ProfilerActivity, profile

    labels = [label for _, label in CLIPS]
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        for _ in range(reps):
            for cid, label in zip(ids, labels):
                agent.compute_loss_from_cache(cid, label)
            reset_pending(agent)
    events = prof.key_averages(group_by_input_shape=True)
    total = sum(e.self_cpu_time_total for e in events)
    vocab = sum(e.self_cpu_time_total for e in events if e.key == "aten::mm" and str(agent.model.dims.n_vocab) in str(e.input_shapes))
    return {"vocab_projection_self_cpu_share": vocab / total}


def bench_model(model_name: str, args) -> dict:
    from ffasr_cli.agent import ASRAgent
    from ffasr_cli.audio import load_audio
    from ffasr_cli.models import load_model

    n = args.n
    t0 = time.perf_counter()
    agents = {m: ASRAgent(model_name, accumulation_steps=n, mode=m, device=args.device, seed=0) for m in MODES}
    device = agents["full"].device
    plain = load_model(model_name, device)
    samples = [load_audio(DATA / wav) for wav, _ in CLIPS]
    durations = [len(x) / 16000 for x in samples]
    log(f"[{model_name}] loaded 3 agents + plain model in {time.perf_counter() - t0:.1f}s on {device}")

    out = {"device": device, "clip_seconds": durations, "accumulation_steps": n}
    t0 = time.perf_counter()
    out["decoding"] = dec = decoding(agents, plain, samples[: args.decode_clips], args.decode_rounds)
    mean_dur = statistics.mean(durations[: args.decode_clips])
    out["rtf"] = {k: v / mean_dur for k, v in dec["seconds"].items()}
    log(f"[{model_name}] decoding: {time.perf_counter() - t0:.1f}s")

    max_cache = agents["encoder"].config.training.max_cache_size
    out["cache_bytes"], ids = cache_sizes(agents, samples, max_cache)
    t0 = time.perf_counter()
    out["update"] = update_cost(agents, ids, args.update_rounds, warmup=1 if args.quick else 2)
    log(f"[{model_name}] update cost: {time.perf_counter() - t0:.1f}s")

    if args.profile:
        t0 = time.perf_counter()
        out["profile_logits"] = profile_logits(agents["logits"], ids["logits"], args.profile_reps)
        out["profile_encoder"] = profile_encoder(
            agents["encoder"], ids["encoder"], args.profile_reps, RESULTS / f"cost_profile_{model_name}.txt"
        )
        log(f"[{model_name}] profile: {time.perf_counter() - t0:.1f}s")

    t0 = time.perf_counter()
    stepping = {m: a for m, a in agents.items() if m in args.step_modes}
    canaries = {m: [a.infer(DATA / wav)[1] for wav in CANARY_CLIPS[: args.canaries]] for m, a in stepping.items()}
    out["step"] = steps(stepping, ids, canaries, n, args.steps)
    log(f"[{model_name}] steps: {time.perf_counter() - t0:.1f}s")
    del agents, plain

    t0 = time.perf_counter()
    out["memory"] = memory(model_name, device, args.threads, n, with_step=not args.quick)
    log(f"[{model_name}] memory (3 child processes): {time.perf_counter() - t0:.1f}s")
    return out


# --------------------------------------------------------------------------- decode table

DECODERS = ("whisper", "ffasr fresh", "ffasr after updates", "ffasr after updates, every term prompted", "ffasr after updates, fp32 projection", "ffasr after updates, fp32 encoder", "faster-whisper int8", "faster-whisper fp32")


def faster_whisper_folder(model_name: str, tmp: Path) -> Path:
    """The CTranslate2 copy of ``model_name`` that ffasr converts, as a folder faster-whisper loads (parts joined)."""
    from ffasr_cli.models import BUNDLED

    folders = BUNDLED[model_name].folders()
    if len(folders) == 1:
        return folders[0]
    target = tmp / model_name
    target.mkdir()
    with open(target / "model.bin", "wb") as out:
        for part in (p for folder in folders for p in sorted(folder.glob("model.bin*"))):
            out.write(part.read_bytes())
    for folder in folders:
        for extra in folder.iterdir():
            if not extra.name.startswith("model.bin") and not (target / extra.name).exists():
                (target / extra.name).symlink_to(extra)
    return target


def decode_table(model_name: str, threads: int, rounds: int, tmp: Path) -> dict:
    """Each decoder on the same clips (tests/data and examples/clips, 2.4–5.3 s), interleaved round by round.

    "after updates" is a profile that learned the names tiny.en mishears in those clips, with the
    shipped settings (``live.open_profile``): weights, term guard and glossary reading, as
    ``listen`` decodes; then the user dictated those sentences again and accepted the ones heard
    right, as a user who goes on using it, so that the glossary reading leaves out the names the
    weights wrote (``decoding.glossary_drop_after``). "every term prompted" keeps them all in it,
    as right after an update. faster-whisper (a benchmark-only extra) decodes greedily, without
    timestamps, with no fallback, from the same CTranslate2 weights ffasr converts.
    """
    import torch
    import whisper
    from whisper.decoding import DecodingOptions

    sys.path.insert(0, str(Path(__file__).parent))
    from live import DATA as LIVE_DATA, EXAMPLES, clip_path, open_profile, settle, taught_examples

    from ffasr_cli.agent import ASRAgent
    from ffasr_cli.audio import load_audio
    from ffasr_cli.models import load_model

    clips = sorted((*LIVE_DATA.glob("*.wav"), *EXAMPLES.glob("*.wav")))
    samples = [load_audio(c) for c in clips]
    plain = load_model(model_name, "cpu")
    options = DecodingOptions(language="en", without_timestamps=True, fp16=False)
    fresh = ASRAgent(model_name, device="cpu")
    session, _ = open_profile(tmp / "state", model_name)
    settle(session)
    for name, label in taught_examples().items():  # the user dictates on, and accepts what was heard right
        heard = session.hear(str(clip_path(name)))
        if heard.text.strip() == label:
            session.teach(heard, None, "accepted")
    settle(session)
    learned = session.agent

    def whisper_decode(x):
        return whisper.decode(plain, whisper.log_mel_spectrogram(whisper.pad_or_trim(torch.from_numpy(x))), options).text

    def infer(agent, **changes):
        config = dataclasses.replace(agent.reader.config, **changes)

        def run(x):
            agent.reader.config = config
            try:
                return agent.infer(x)[0]
            finally:
                agent.cache.entries.clear()
        return run
    decoders = {
        "whisper": whisper_decode,
        "ffasr fresh": infer(fresh),
        "ffasr after updates": infer(learned),
        "ffasr after updates, every term prompted": infer(learned, glossary_drop_after=None),
        "ffasr after updates, fp32 projection": infer(learned, int8_projection=False),
    }
    if learned.reader.bf16:  # a CPU with AMX: also the encoder in fp32, as on any other CPU
        decoders["ffasr after updates, fp32 encoder"] = infer(learned, bf16_encoder=False)
    try:
        from faster_whisper import WhisperModel

        folder = str(faster_whisper_folder(model_name, tmp))
        for kind in ("int8", "float32"):
            fw = WhisperModel(folder, device="cpu", compute_type=kind, cpu_threads=threads, num_workers=1)
            decoders[f"faster-whisper {'fp32' if kind == 'float32' else kind}"] = lambda x, fw=fw: " ".join(
                seg.text.strip() for seg in fw.transcribe(
                    x, language="en", beam_size=1, temperature=0.0, without_timestamps=True,
                    condition_on_previous_text=False, vad_filter=False)[0]
            )  # fmt: skip
    except ImportError:
        log("faster-whisper is not installed (pip install faster-whisper): its rows are left out")

    for decode in decoders.values():
        decode(samples[0])  # warm-up
    times, texts = interleaved(decoders, samples, rounds)
    session.close()
    seconds = [len(x) / 16000 for x in samples]
    ref = {(r, c): (w, u) for r, c, w, u in times["whisper"]}
    table = {}
    for name, rows in times.items():
        table[name] = {
            "seconds": median([w for _, _, w, _ in rows]),
            "rtf": median([w / seconds[c] for _, c, w, _ in rows]),
            "ratio_to_whisper": median([w / ref[(r, c)][0] for r, c, w, _ in rows]),
            "cpu_ratio_to_whisper": median([u / ref[(r, c)][1] for r, c, _, u in rows]),
            "same_text_as_whisper": sum(texts[(name, c)].strip() == texts[("whisper", c)].strip() for c in range(len(samples))),
        }
    return {
        "clips": [c.name for c in clips], "clip_seconds": seconds, "rounds": rounds, "threads": threads,
        "profile": {"steps": learned.reader.learned.steps, "terms": sorted(learned.reader.learned.terms), "glossary": list(learned.reader.glossary),
                    "prompted": learned.reader.prompt_terms(learned.reader.written_by_weights())},
        "decoders": table,
        "texts": {name: [texts[(name, c)] for c in range(len(samples))] for name in decoders},
    }  # fmt: skip


def decode_report(result: dict) -> None:
    for model, d in result["decode"].items():
        print(f"\n[{model}] {len(d['clips'])} clips x {d['rounds']} rounds, {d['threads']} thread(s); profile: {d['profile']['steps']} updates, terms {', '.join(d['profile']['terms'])}")
        for name, row in d["decoders"].items():
            print(f"  {name:<40} RTF {row['rtf']:.3f}  x whisper {row['ratio_to_whisper']:.3f} (cpu {row['cpu_ratio_to_whisper']:.3f})  same text {row['same_text_as_whisper']}/{len(d['clips'])}")


def decode_plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(result["decode"])
    fig, ax = plt.subplots(figsize=(10, 4.2))
    width = 0.8 / len(models)
    names = [n for n in DECODERS if any(n in d["decoders"] for d in result["decode"].values())]
    for j, model in enumerate(models):
        rows = result["decode"][model]["decoders"]
        vals = [rows[n]["ratio_to_whisper"] if n in rows else 0 for n in names]
        xs = [i + (j - (len(models) - 1) / 2) * width for i in range(len(names))]
        for b, v in zip(ax.bar(xs, vals, width, label=model), vals):
            ax.annotate(f"{v:.2f}", (b.get_x() + b.get_width() / 2, v), ha="center", va="bottom", fontsize=8)
    ax.axhline(1.0, color="red", linestyle="--", linewidth=1)
    ax.set_xticks(range(len(names)), [n.replace("ffasr ", "ffasr\n").replace(", ", ",\n") for n in names], fontsize=8)
    ax.set_ylabel("decode time / openai-whisper's")
    ax.legend()
    fig.suptitle(f"Decoding the same clips, CPU, {result['machine']['threads']} thread(s) (red: plain openai-whisper)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


# --------------------------------------------------------------------------- report


def verdict(value, key) -> str:
    if value is None:
        return "n/a"
    limit, _, op = TARGETS[key]
    ok = value <= limit if op == "<=" else value < limit
    return "PASS" if ok else "FAIL"


def checks(result: dict) -> list[dict]:
    rows = []

    def add(what, value, key, fmt="{:.3f}", note=""):
        limit, unit, op = TARGETS[key]
        rows.append({
            "what": what, "value": value, "shown": "n/a" if value is None else fmt.format(value),
            "target": f"{op} {fmt.format(limit) if unit != 'B' else f'{limit // 1024} KB'} {unit if unit != 'B' else ''}".strip(),
            "verdict": verdict(value, key), "note": note,
        })  # fmt: skip

    for model, m in result["models"].items():
        u, d, s = m["update"], m["decoding"], m["step"]
        add(f"[{model}] encoder update / full", u["ratio_to_full"]["encoder"], "update_ratio.encoder", note=f"cpu-time ratio {u['cpu_ratio_to_full']['encoder']:.3f}")
        add(f"[{model}] logits update / full", u["ratio_to_full"]["logits"], "update_ratio.logits", note=f"cpu-time ratio {u['cpu_ratio_to_full']['logits']:.3f}")
        for mode in MODES:
            add(f"[{model}] capture overhead, {mode} infer / whisper.decode", d["ratio_to_whisper"][f"infer.{mode}"], "capture_overhead")
        add(f"[{model}] glossary reading (24 terms) / guarded, no glossary", d["glossary_ratio"], "glossary_overhead")
        add(f"[{model}] term guard (after an update) / unguarded", d["guard_ratio"], "guard_overhead",
            note=f"cpu-time ratio {d['guard_cpu_ratio']:.3f}")
        for mode in MODES:
            spill = s.get(mode, {}).get("spill_seconds")
            add(f"[{model}] latency, {mode} (no step)", u["seconds"][mode], "latency",
                note=("baseline; " if mode == "full" else "") + (f"+ spill to disk {spill:.3f} s" if spill is not None else ""))  # fmt: skip
        for mode in MODES:
            if mode not in s:
                add(f"[{model}] step + save, {mode}", None, "step", note="not run (--quick)")
                continue
            add(f"[{model}] step + save, {mode}", s[mode]["step_plus_save"], "step", fmt="{:.2f}",
                note=("baseline; " if mode == "full" else "") + f"amortized {s[mode]['amortized_per_correction']:.3f} s/correction")  # fmt: skip
        add(f"[{model}] logits cache per interaction", m["cache_bytes"]["logits"]["per_interaction"], "logits_cache_bytes", fmt="{:,.0f}")
    for cmd, v in result["startup"].items():
        imports = v.get("imports", {})
        value = v["seconds"]
        row_note = v.get("reason", "") or f"imports torch: {imports.get('torch')}; cpu {v['cpu_seconds']:.3f} s"
        add(cmd, value, "startup", note=row_note)
        if value is not None and imports.get("torch"):
            rows[-1]["verdict"] = "FAIL"
    return rows


def print_report(result: dict, rows: list[dict]) -> None:
    print()
    width = max(len(r["what"]) for r in rows)
    for r in rows:
        print(f"{r['what']:<{width}}  {r['shown']:>12}  target {r['target']:<16} {r['verdict']:<4}  {r['note']}")
    for model, m in result["models"].items():
        print(f"\n[{model}] median seconds per compute_loss_from_cache: " + ", ".join(f"{k} {v:.4f}" for k, v in m["update"]["seconds"].items()))
        print(f"[{model}] decoding seconds: " + ", ".join(f"{k} {v:.3f}" for k, v in m["decoding"]["seconds"].items()))
        print(f"[{model}] real-time factor: " + ", ".join(f"{k} {v:.3f}" for k, v in m["rtf"].items()))
        cb = m["cache_bytes"]
        print(f"[{model}] cache bytes/interaction: " + ", ".join(f"{k} {cb[k]['per_interaction']:,.0f}" for k in (*MODES, "raw_logits_fp32")))
        print(f"[{model}] full cache ({cb['encoder']['max_cache_size']} entries): " + ", ".join(f"{k} {cb[k]['full_cache'] / 2**20:,.1f} MiB" for k in (*MODES, "raw_logits_fp32")))
        mem = m["memory"]
        print(f"[{model}] update peak RSS delta: " + ", ".join(
            f"{k} {mem[k]['update']['peak_delta'] / 2**20:.1f} MiB ({mem[k]['update'].get('ratio_to_full', float('nan')):.2f}x)" if "update" in mem[k] else f"{k} error" for k in MODES))  # fmt: skip
        print(f"[{model}] step peak RSS delta: " + ", ".join(
            f"{k} {mem[k]['step']['peak_delta'] / 2**20:.1f} MiB" if "step" in mem[k] else f"{k} n/a" for k in MODES))  # fmt: skip
        for part in ("update", "step"):
            if any("cuda_peak_delta" in mem[k].get(part, {}) for k in MODES):
                print(f"[{model}] {part} peak CUDA memory delta: " + ", ".join(
                    f"{k} {mem[k][part]['cuda_peak_delta'] / 2**20:.1f} MiB" for k in MODES if part in mem[k]))  # fmt: skip
        if "profile_encoder" in m:
            p = m["profile_encoder"]
            print(f"[{model}] encoder update, self-CPU share: " + "; ".join(f"{k} {v:.0%}" for k, v in p["breakdown_self_cpu_share"].items()))
            print(f"[{model}] logits update, vocabulary GEMMs: {m['profile_logits']['vocab_projection_self_cpu_share']:.0%} of self CPU")


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(result["models"])
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2))
    width = 0.8 / max(1, len(models))
    panels = (
        ("update time / full (log)", lambda m, mode: m["update"]["ratio_to_full"][mode], True, {"encoder": 0.12, "logits": 0.02}),
        ("update peak memory / full (log)", lambda m, mode: m["memory"][mode].get("update", {}).get("ratio_to_full"), True, {}),
        ("cache bytes per interaction (log)", lambda m, mode: m["cache_bytes"][mode]["per_interaction"], True, {"logits": 64 * 1024}),
    )
    labels = list(MODES) + ["raw logits\nfp32 (seed)"]
    for ax, (title, get, log_scale, targets) in zip(axes, panels):
        cols = labels if "cache" in title else list(MODES)
        for j, model in enumerate(models):
            m = result["models"][model]
            vals = []
            for mode in cols:
                if mode.startswith("raw"):
                    vals.append(m["cache_bytes"]["raw_logits_fp32"]["per_interaction"])
                else:
                    vals.append(get(m, mode) or 0)
            xs = [i + (j - (len(models) - 1) / 2) * width for i in range(len(cols))]
            bars = ax.bar(xs, vals, width, label=model)
            for b, v in zip(bars, vals):
                txt = f"{v / 1024:,.0f} KB" if "cache" in title else f"{v:.3f}"
                ax.annotate(txt, (b.get_x() + b.get_width() / 2, v), ha="center", va="bottom", fontsize=8)
        for mode, t in targets.items():
            i = cols.index(mode)
            ax.hlines(t, i - 0.45, i + 0.45, colors="red", linestyles="--", linewidth=1)
        ax.set_xticks(range(len(cols)), cols)
        ax.set_title(title)
        if log_scale:
            ax.set_yscale("log")
        if len(models) > 1:
            ax.legend()
    on_gpu = any(m["device"].startswith("cuda") for m in result["models"].values())
    where = result["machine"]["cuda"] if on_gpu else f"CPU, {result['machine']['threads']} thread(s)"
    fig.suptitle(f"ffasr update cost per mode ({where}; red: target)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer repeats (about a minute)")
    ap.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1, for repeatability)")
    ap.add_argument("--models", nargs="*", help="default: tiny.en, plus base.en/base when they load offline")
    ap.add_argument("-n", type=int, default=4, help="accumulation_steps N (default 4)")
    ap.add_argument("--device", choices=("cpu", "cuda"), help="default: ffasr's own choice (CUDA when there is one)")
    ap.add_argument("--no-profile", dest="profile", action="store_false")
    ap.add_argument("--out", type=Path, default=RESULTS / "cost.json")
    ap.add_argument("--decode-table", action="store_true", help="only the decode table: whisper, ffasr and faster-whisper on the same clips (results/cost_decode.json unless --out)")
    ap.add_argument("--child-memory", metavar="MODE", help=argparse.SUPPRESS)
    ap.add_argument("--model", default="tiny.en", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child_memory:
        print("@@" + json.dumps(child_memory(args.child_memory, args.model, args.device, args.threads, args.n, not args.quick)), flush=True)
        return

    args.decode_rounds, args.decode_clips, args.update_rounds, args.steps, args.profile_reps, args.canaries, startup_reps = (
        (3, 1, 3, 1, 2, 1, 3) if args.quick else (3, len(CLIPS), 10, 3, 5, 3, 7)
    )
    args.step_modes = ("logits", "encoder") if args.quick else MODES  # a full-mode step takes ~15 s
    if args.quick:
        args.profile = False
    RESULTS.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    if args.decode_table:
        decode_only(args, started)
        return
    result = {"startup": startup(startup_reps)}  # before torch is imported here (no page-cache bias)
    import torch

    torch.set_num_threads(args.threads)
    result["machine"] = machine_info(args.threads)
    result["settings"] = {k: v for k, v in vars(args).items() if k not in ("child_memory", "model", "out")}
    result["targets"] = {k: {"limit": v[0], "unit": v[1], "op": v[2]} for k, v in TARGETS.items()}
    result["models"] = {}
    for model in args.models or models_on_disk():
        result["models"][model] = bench_model(model, args)
    rows = checks(result)
    result["checks"] = rows
    result["machine"]["loadavg_at_end"] = os.getloadavg()
    result["wall_seconds"] = time.perf_counter() - started
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    plot(result, args.out.with_suffix(".png"))
    print_report(result, rows)
    print(f"\nwrote {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out} and .png in {result['wall_seconds']:.0f}s")


def decode_only(args, started: float) -> None:
    import torch

    torch.set_num_threads(args.threads)
    result = {"machine": machine_info(args.threads), "decode": {}}
    for model in args.models or models_on_disk():
        with tempfile.TemporaryDirectory() as tmp:
            result["decode"][model] = decode_table(model, args.threads, 1 if args.quick else 3, Path(tmp))
    result["machine"]["loadavg_at_end"] = os.getloadavg()
    result["wall_seconds"] = time.perf_counter() - started
    out = args.out if args.out != RESULTS / "cost.json" else RESULTS / "cost_decode.json"
    out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    decode_plot(result, out.with_suffix(".png"))
    decode_report(result)
    print(f"\nwrote {out} and .png in {result['wall_seconds']:.0f}s")


if __name__ == "__main__":
    main()
