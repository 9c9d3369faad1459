#!/usr/bin/env python
"""Live latency: from the end of an utterance to its transcript, as ``ffasr listen`` gets it, on one CPU core.

    python benchmarks/live.py            # about 7 minutes
    python benchmarks/live.py --quick    # about 3 minutes: one round of 6 utterances

Utterances are real clips (tests/data/*.wav, examples/clips/*.wav, 2.4-5.3 s), spoken one after
another with a pause of 1-2 s between them (one every 3.4-7.3 s), and played in real time through
the path ``ffasr listen`` takes: a sound card delivering 30 ms blocks, ``Capture`` with its
``EnergyEndpointer`` on its own thread, and the loop that takes each end-pointed utterance and
decodes it. An utterance's latency runs from the moment the end-pointer decided it had ended
(``silence_s`` = 0.8 s of quiet after the last word, on the sound card's clock) to its transcript:
the time it waited while the previous one was decoded, plus its own decoding. (From the end of the
speech it is 0.6 s more, whatever decodes: the utterance ends 0.2 s after its last loud frame; this
is recorded too.) Decoding is, per condition:

* ``whisper``: openai-whisper's ``whisper.decode`` on a plain tiny.en (no adapter, no prompt);
* ``ffasr``: ``Session.hear`` on a profile that has learned (corrections, updates: the term
  guard and the glossary reading run, as for a user after the first update), no update running;
* ``ffasr+update``: the same while the learner thread trains: a user keeps correcting, so that an
  update is always queued behind the one running (the shipped settings: 4 corrections an update).

The three run in the same process on the same clips, in rounds of a few utterances, each round
once per condition in rotating order, so that a busy spell of the machine hits all three. Process
and threads are pinned to one core, one torch thread. Dropped = utterances the end-pointer found
minus transcripts. Results: benchmarks/results/live.json and live.png.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ffasr_cli.audio import SAMPLE_RATE, load_audio
from ffasr_cli.microphone import Capture, EnergyEndpointer, Recorder, find_utterances

ROOT = Path(__file__).resolve().parent.parent
DATA, EXAMPLES = ROOT / "tests" / "data", ROOT / "examples" / "clips"
RESULTS = Path(__file__).resolve().parent / "results"

CONDITIONS = ("whisper", "ffasr", "ffasr+update")
TARGETS = {"ffasr": 1.5, "ffasr+update": 2.5}  # p95 latency / whisper's p95
PAUSE_S = (1.0, 2.0)  # between two utterances: longer than the end-pointer's 0.8 s, so each is one utterance

# Corrections the profile learns from (tiny.en mishears the name in each), and transcripts accepted as canaries.
TAUGHT = {
    "kubernetes_deploy.wav": "Deploy the new service to Kubernetes tonight.",
    "kubernetes_cluster.wav": "Our Kubernetes cluster ran out of memory again.",
    "kubernetes_dashboard.wav": "Please restart the Kubernetes dashboard before lunch.",
}
CANARIES = ("weather.wav", "librivox_ill_disposed.wav", "librivox_amiable.wav")


def clip_path(name: str) -> Path:
    return DATA / name if (DATA / name).exists() else EXAMPLES / name


def taught_examples() -> dict[str, str]:
    """Clip -> the sentence said, for every clip with a name tiny.en mishears: the ones above and examples/clips'."""
    manifest = json.loads((EXAMPLES / "manifest.json").read_text())
    said = {name: row.rsplit("|", 1)[1] for name, row in manifest.items() if "fix" not in name}
    return TAUGHT | {name: text for name, text in said.items() if "Xochitl" in text or "Nginx" in text}


def load(name: str) -> np.ndarray:
    return load_audio(clip_path(name))


# --------------------------------------------------------------------------- the microphone side


class SoundCard:
    """Plays a recording in 30 ms blocks in real time, as a microphone delivers it; ``position`` is its clock."""

    def __init__(self, audio: np.ndarray):
        self.audio, self.position, self.name = audio, 0, "benchmark"
        self.started: float | None = None  # time.time() of sample 0

    def at(self, sample: int) -> float:
        """When ``sample`` was delivered."""
        return self.started + sample / SAMPLE_RATE

    @property
    def done(self) -> bool:
        return self.position >= len(self.audio)

    def read_block(self, timeout: float = 0.1) -> np.ndarray | None:
        if self.started is None:
            self.started = time.time()
        if self.done:
            time.sleep(timeout)
            return None
        wait = self.at(self.position + Recorder.BLOCK) - time.time()
        if wait > timeout:
            time.sleep(timeout)
            return None
        time.sleep(max(0.0, wait))  # a capture thread that fell behind gets the blocks at once, as from a device's buffer
        self.position += Recorder.BLOCK
        return self.audio[self.position - Recorder.BLOCK : self.position]


class StampingEndpointer(EnergyEndpointer):
    """listen's end-pointer (its defaults), noting where in the stream it decided that each utterance had ended."""

    def reset(self, keep_floor: bool = True) -> None:
        super().reset(keep_floor)
        self.fed, self.decided = 0, {}  # samples fed; Utterance.end -> samples fed when it was found

    def feed(self, samples):
        found = super().feed(samples)
        self.fed += len(samples)
        for utterance in found:
            self.decided[utterance.end] = self.fed
        return found


def spoken(names: list[str], rng: random.Random) -> tuple[np.ndarray, list[str]]:
    """The clips one after another with a pause between them (and before the first)."""
    parts, order = [np.zeros(SAMPLE_RATE // 2, np.float32)], []
    for name in names:
        parts += [load(name), np.zeros(round(rng.uniform(*PAUSE_S) * SAMPLE_RATE), np.float32)]
        order.append(name)
    return np.concatenate(parts), order


# --------------------------------------------------------------------------- one pass


def run_pass(condition: str, audio: np.ndarray, order: list[str], decode, session, reserve) -> dict:
    """Play ``audio`` through Capture and decode each utterance as it comes; the latencies."""
    expected = len(find_utterances(audio))
    if expected != len(order):
        raise SystemExit(f"the end-pointer finds {expected} utterances in {len(order)} clips: lengthen PAUSE_S")
    card, endpointer = SoundCard(audio), StampingEndpointer()
    load_before = os.getloadavg()
    rows, taught, quiet_since = [], 0, None
    with Capture(card, endpointer) as capture:
        while len(rows) < expected:
            if condition == "ffasr+update":
                taught += keep_learner_busy(session, reserve, taught)
            utterance = capture.take(timeout=0.05)
            if utterance is None:
                if card.done and len(capture) == 0:  # the last pause is longer than the end-pointer's: all was found
                    quiet_since = quiet_since or time.time()
                    if time.time() - quiet_since > 2.0:
                        break
                continue
            busy_before = learner_busy(session)
            started, cpu0 = time.time(), time.thread_time()
            text = decode(utterance.audio)
            finished, cpu = time.time(), time.thread_time() - cpu0
            decided = card.at(endpointer.decided[utterance.end])
            rows.append({
                "clip": order[len(rows)],
                "audio_s": round(utterance.seconds, 3),
                "speech_end": card.at(utterance.end),
                "decided": decided,
                "started": started,
                "finished": finished,
                "queue_s": started - decided,
                "decode_s": finished - started,
                "decode_cpu_s": cpu,
                "latency_s": finished - decided,
                "from_speech_end_s": finished - card.at(utterance.end),
                "learner_busy": busy_before or learner_busy(session),
                "text": text,
            })  # fmt: skip
    transcribed = sum(1 for r in rows if r["text"].strip())
    return {
        "condition": condition,
        # of its core, the share the decoding thread got (median): 1 when nothing else wanted it
        "core_share": percentile([r["decode_cpu_s"] / r["decode_s"] for r in rows], 50),
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
        "started": card.started,
        "ended": time.time(),
        "fed": expected,
        "transcribed": transcribed,
        "dropped": expected - transcribed,
        "corrections_taught": taught,
        "utterances": rows,
    }


def learner_busy(session) -> bool:
    return session.learner_thread.busy


def keep_learner_busy(session, reserve: list, taught: int) -> int:
    """Correct as a busy user does: enough that an update is always queued behind the running one.

    A correction is one of the profile's real misheard transcripts, its cached windows added to the
    cache again (an update uses up the cache entries of its corrections). Returns how many were given.
    """
    from ffasr_cli.session import Heard

    given, batch = 0, session.agent.config.training.accumulation_steps
    while len(session.waiting()) < 2 * batch:
        windows, label = reserve[(taught + given) % len(reserve)]
        entry = session.agent.cache.add(windows)
        session.teach(Heard(entry.text, entry.cache_id, "benchmark:correction", 0.0), label, "typed")
        given += 1
    return given


def settle(session, timeout: float = 300.0) -> None:
    """Wait until the learner thread has done everything it was given; raise what it raised."""
    deadline = time.time() + timeout
    done = []
    while learner_busy(session) and time.time() < deadline:
        time.sleep(0.05)
        done += session.finished()
    done += session.finished()
    errors = [d for d in done if isinstance(d, BaseException)]
    if errors:
        raise errors[0]
    if learner_busy(session):
        raise SystemExit(f"the learner thread was still busy after {timeout:.0f} s")


# --------------------------------------------------------------------------- the profile


def open_profile(state_dir: Path, model: str = "tiny.en"):
    """A background session (as ``ffasr listen`` opens it) on a profile that has learned.

    Its canaries are accepted transcripts; it learns the misheard names, with the shipped
    settings, until at least one update is applied. Returns the session and the corrections
    (cached windows, label) the user of ``ffasr+update`` keeps giving.
    """
    from ffasr_cli.config import load_config
    from ffasr_cli.session import Session

    session = Session.open(state_dir, "live", load_config(None, model=model, device="cpu"), "benchmark", background=True)
    for name in CANARIES:
        session.teach(session.hear(str(clip_path(name))), None, "accepted")
    reserve = []
    for name, label in taught_examples().items():
        heard = session.hear(str(clip_path(name)))
        if heard.cache_id is None or heard.text.strip() == label:
            continue  # heard right: nothing to correct
        reserve.append((session.agent.cache.get(heard.cache_id).windows, label))
        session.teach(heard, label, "typed")
    session.step_now()  # the rest of the batch too
    settle(session)
    if session.agent.reader.learned.steps == 0:
        raise SystemExit("no update was applied: the profile has not learned")
    return session, reserve


def updates_during(session, start: float, end: float) -> list[dict]:
    """The updates that ran between ``start`` and ``end`` (time.time()), from the store."""
    rows = []
    for u in session.store.updates(session.profile):
        seconds = (u.duration_ms or 0) / 1000
        if u.created_at > start and u.created_at - seconds < end:
            rows.append({"step": u.step, "status": u.status, "seconds": seconds, "start": u.created_at - seconds,
                         "end": u.created_at})  # fmt: skip
    return rows


def overlap(a0: float, a1: float, spans: list[dict]) -> float:
    """Seconds of [a0, a1] covered by ``spans``."""
    return sum(max(0.0, min(a1, s["end"]) - max(a0, s["start"])) for s in spans)


# --------------------------------------------------------------------------- summary


def percentile(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def summarize(passes: list[dict]) -> dict:
    out = {}
    for condition in CONDITIONS:
        mine = [p for p in passes if p["condition"] == condition]
        rows = [r for p in mine for r in p["utterances"]]
        latency = [r["latency_s"] for r in rows]
        out[condition] = {
            "n": len(rows),
            "p50": percentile(latency, 50),
            "p95": percentile(latency, 95),
            "max": max(latency) if latency else None,
            "from_speech_end_p50": percentile([r["from_speech_end_s"] for r in rows], 50),
            "from_speech_end_p95": percentile([r["from_speech_end_s"] for r in rows], 95),
            "decode_p50": percentile([r["decode_s"] for r in rows], 50),
            "decode_cpu_p50": percentile([r["decode_cpu_s"] for r in rows], 50),
            "queued": sum(r["queue_s"] > 0.1 for r in rows),
            "fed": sum(p["fed"] for p in mine),
            "dropped": sum(p["dropped"] for p in mine),
            "learner_busy": sum(r["learner_busy"] for r in rows),
        }
    plain = out["whisper"]
    for condition in CONDITIONS[1:]:
        out[condition]["ratio_p50"] = out[condition]["p50"] / plain["p50"]
        out[condition]["ratio_p95"] = out[condition]["p95"] / plain["p95"]
        out[condition]["cpu_ratio_p50"] = out[condition]["decode_cpu_p50"] / plain["decode_cpu_p50"]  # this thread's own work
    return out


def checks(summary: dict) -> list[dict]:
    rows = []
    for condition, limit in TARGETS.items():
        ratio = summary[condition]["ratio_p95"]
        rows.append({"what": f"{condition}: p95 / whisper p95", "value": ratio, "target": f"<= {limit}", "pass": ratio <= limit})
    dropped = sum(s["dropped"] for s in summary.values())
    rows.append({"what": "dropped utterances", "value": dropped, "target": "0", "pass": dropped == 0})
    return rows


def machine_info(core: int) -> dict:
    import torch
    import whisper

    cpu = platform.processor()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "pinned_to_core": core,
        "affinity": sorted(os.sched_getaffinity(0)),
        "torch_threads": torch.get_num_threads(),
        "loadavg_at_start": os.getloadavg(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "whisper": getattr(whisper, "__version__", "?"),
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
    }


def print_report(result: dict) -> None:
    s = result["summary"]
    print(f"\n{'condition':<14} {'n':>3} {'p50 s':>7} {'p95 s':>7} {'x p50':>6} {'x p95':>6} {'decode p50':>10} {'dropped':>7}")
    for condition in CONDITIONS:
        c = s[condition]
        ratios = f"{c.get('ratio_p50', 1):6.2f} {c.get('ratio_p95', 1):6.2f}"
        print(f"{condition:<14} {c['n']:>3} {c['p50']:7.3f} {c['p95']:7.3f} {ratios} {c['decode_p50']:10.3f} {c['dropped']:>7}")
    b = result["updating"]
    print(f"\nupdates while ffasr+update ran: {b['updates']} ({b['update_seconds_p50']:.1f} s median), "
          f"covering {b['covered']:.0%} of its passes")  # fmt: skip
    share = result["core_share"]
    print(f"the decoding thread got {share['min']:.0%}-{share['max']:.0%} of its core in the passes without an update")
    for row in result["checks"]:
        print(f"{row['what']:<30} {row['value']:>8.3g}  target {row['target']:<6} {'pass' if row['pass'] else 'MISSED'}")


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.2), gridspec_kw={"width_ratios": [1, 1.6]})
    s = result["summary"]
    plain_p95 = s["whisper"]["p95"]
    for i, condition in enumerate(CONDITIONS):
        latency = [r["latency_s"] for p in result["passes"] if p["condition"] == condition for r in p["utterances"]]
        jitter = np.random.default_rng(i).uniform(-0.15, 0.15, len(latency))
        left.scatter(i + jitter, latency, s=12, alpha=0.6)
        for q, width in (("p50", 1), ("p95", 2)):
            left.scatter([i], [s[condition][q]], marker="_", s=900, color="black", linewidths=width)
        left.annotate(f"p95 {s[condition]['p95']:.2f} s", (i + 0.2, s[condition]["p95"]), fontsize=8, va="center")
        if condition in TARGETS:
            left.hlines(TARGETS[condition] * plain_p95, i - 0.4, i + 0.4, colors="red", linestyles="--", linewidth=1)
    left.set_xticks(range(len(CONDITIONS)), CONDITIONS)
    left.set_ylabel("end of utterance -> transcript (s)")
    left.set_title("latency (bars: p50, p95; red: target)")
    left.set_ylim(bottom=0)

    updating = [p for p in result["passes"] if p["condition"] == "ffasr+update"]
    offset = 0.0
    for p in updating:
        t0 = p["started"]
        for u in p["updates"]:
            right.axvspan(offset + u["start"] - t0, offset + u["end"] - t0, color="orange", alpha=0.25, linewidth=0)
        xs = [offset + r["decided"] - t0 for r in p["utterances"]]
        right.plot(xs, [r["latency_s"] for r in p["utterances"]], "o-", markersize=4, color="tab:green")
        offset += p["ended"] - t0 + 5
    right.axhline(s["whisper"]["p95"], color="tab:blue", linestyle=":", linewidth=1, label="whisper p95")
    right.axhline(TARGETS["ffasr+update"] * plain_p95, color="red", linestyle="--", linewidth=1, label="target")
    right.set_xlabel("time in the ffasr+update passes (s; orange: an update training, then its canary check)")
    right.set_ylabel("latency (s)")
    right.set_title("ffasr while the learner thread trains")
    right.set_ylim(bottom=0)
    right.legend(loc="upper right", fontsize=8)
    m = result["machine"]
    fig.suptitle(f"ffasr listen, tiny.en, one core of {m['cpu']} ({m['date'][:10]})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


# --------------------------------------------------------------------------- main


def pin_to(core: int) -> None:
    """This process on one core with one thread for torch: its threads so far, and (inherited) every later one."""
    for thread in os.listdir("/proc/self/task"):
        os.sched_setaffinity(int(thread), {core})
    for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):  # read when torch loads
        os.environ[variable] = "1"


def plain_whisper():
    """openai-whisper's own decoding on a plain tiny.en: no adapter, no prompt, no guard."""
    import torch
    import whisper
    from whisper.decoding import DecodingOptions

    from ffasr_cli.models import load_model

    model = load_model("tiny.en", "cpu")
    options = DecodingOptions(language="en", without_timestamps=True, fp16=False)  # as ffasr decodes on a CPU

    def decode(audio: np.ndarray) -> str:
        mel = whisper.log_mel_spectrogram(whisper.pad_or_trim(torch.from_numpy(audio)))
        return whisper.decode(model, mel, options).text

    return decode


def describe_profile(session, reserve: list, seconds: float) -> dict:
    training = session.agent.config.training
    return {
        "seconds": seconds,
        "updates": [vars(u) for u in session.store.updates(session.profile)],
        "steps": session.agent.reader.learned.steps,
        "glossary": list(session.agent.reader.glossary),
        "corrections_to_keep_giving": len(reserve),
        "accumulation_steps": training.accumulation_steps,
        "inner_steps": training.inner_steps,
    }


def measure(shares: list[list[str]], rng: random.Random, result: dict) -> list[dict]:
    """Every round: its clips spoken once per condition, the conditions in rotating order."""
    whisper_decode = plain_whisper()
    with tempfile.TemporaryDirectory(prefix="ffasr-live-") as state_dir:
        started = time.time()
        session, reserve = open_profile(Path(state_dir))
        try:
            result["profile"] = describe_profile(session, reserve, time.time() - started)
            decoders = {"whisper": whisper_decode, "ffasr": lambda audio: session.hear(audio).text}
            decoders["ffasr+update"] = decoders["ffasr"]
            warm = load(shares[0][0])  # first-call costs are the process's, not a condition's
            whisper_decode(warm)
            session.hear(warm)
            passes = []
            for r, share in enumerate(shares):
                audio, order = spoken(share, rng)
                for condition in CONDITIONS[r % 3 :] + CONDITIONS[: r % 3]:
                    log(f"round {r + 1}/{len(shares)}: {condition}, {len(order)} utterances ({len(audio) / SAMPLE_RATE:.0f} s)")
                    p = run_pass(condition, audio, order, decoders[condition], session, reserve)
                    settle(session)  # the next pass starts with no update running
                    passes.append(p | {"round": r, "updates": updates_during(session, p["started"], p["ended"])})
            return passes
        finally:
            session.close(finish_learning=False)


def while_updating(passes: list[dict]) -> dict:
    """How busy the learner was in the ffasr+update passes."""
    updating = [p for p in passes if p["condition"] == "ffasr+update"]
    spans = [u for p in updating for u in p["updates"]]
    covered = sum(overlap(p["started"], p["ended"], p["updates"]) for p in updating)
    return {
        "updates": len(spans),
        "update_seconds": [u["seconds"] for u in spans],
        "update_seconds_p50": percentile([u["seconds"] for u in spans], 50) or 0.0,
        "covered": covered / sum(p["ended"] - p["started"] for p in updating),
        "utterances_during_an_update": sum(overlap(r["decided"], r["finished"], p["updates"]) > 0
                                           for p in updating for r in p["utterances"]),  # fmt: skip
        "corrections_taught": sum(p["corrections_taught"] for p in updating),
    }


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="one round of 6 utterances per condition (about 3 minutes)")
    ap.add_argument("--rounds", type=int, default=4, help="rounds of the three conditions, each on its share of the clips")
    ap.add_argument("--core", type=int, help="the CPU core to run on (default: the first this process may use)")
    ap.add_argument("--seed", type=int, default=0, help="order of the clips and length of the pauses")
    ap.add_argument("--out", type=Path, default=RESULTS / "live.json", help="the results file; the plot goes next to it (.png)")
    args = ap.parse_args()
    core = min(os.sched_getaffinity(0)) if args.core is None else args.core
    pin_to(core)
    started = time.time()
    import torch

    torch.set_num_threads(1)
    result = {"machine": machine_info(core)}
    rng = random.Random(args.seed)
    clips = sorted(p.name for p in (*DATA.glob("*.wav"), *EXAMPLES.glob("*.wav")))
    rng.shuffle(clips)
    shares = [clips[:6]] if args.quick else [clips[r :: args.rounds] for r in range(args.rounds)]
    result["settings"] = {"rounds": len(shares), "utterances": sum(map(len, shares)), "pause_s": PAUSE_S, "seed": args.seed}

    passes = measure(shares, rng, result)
    result["summary"] = summarize(passes)
    result["updating"] = while_updating(passes)
    result["checks"] = checks(result["summary"])
    # how evenly the machine disturbed the passes without an update (in the others the learner takes its share)
    shares = [p["core_share"] for p in passes if p["condition"] != "ffasr+update"]
    result["core_share"] = {"min": min(shares), "max": max(shares)}
    result["passes"] = passes
    result["machine"]["loadavg_at_end"] = os.getloadavg()
    result["wall_seconds"] = time.time() - started
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    plot(result, args.out.with_suffix(".png"))
    print_report(result)
    print(f"\nwrote {args.out} and .png in {result['wall_seconds']:.0f} s")


if __name__ == "__main__":
    main()
