"""Time the music analysis of a synthetic track: decode through the bundled ffmpeg and every per-frame feature.

The track (made here, so nothing is downloaded) is a 128 BPM mix: kick on every beat, snare on 2 and 4,
hi-hats on the eighths, a bass line and chords, with an intro without drums and a breakdown, in stereo at
44.1 kHz; it is written as WAV and as AAC (.m4a, what a phone or a music library holds). Each analysis runs in
a fresh Python process (no cache), three times; the medians are printed with the process's peak memory (and
ffmpeg's, which runs beside it; both VmHWM), the memory numpy allocated for the analysis itself (tracemalloc), the
tempo found, and the CPU's features (Linux). Targets: a 3-minute track in under 2 s on 2 CPU cores, under 200 MB.

    python scripts/bench_audio.py [--seconds 180] [--fps 24] [--repeats 3] [--write-track demo.wav]

``--write-track`` only writes the track (a demo for `zoomdream curves`) and exits.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from zoomdream import audio  # noqa: E402
from zoomdream.media.ffmpeg import file_arg, run_ffmpeg  # noqa: E402

RATE, BPM = 44100, 128.0

CHILD = r"""
import json, os, resource, sys, threading, time, tracemalloc
from pathlib import Path
from zoomdream import audio

def hwm(pid="self"):  # peak resident memory of a process, MB (VmHWM: its own, unlike ru_maxrss after fork)
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    return next((int(line.split()[1]) / 1024 for line in text.splitlines() if line.startswith("VmHWM")), 0.0)

peaks, done = {}, threading.Event()

def watch():  # the ffmpeg child's peak, read while it runs
    while not done.wait(0.02):
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    stat = Path(f"/proc/{entry}/stat").read_text()
                except OSError:
                    continue
                if int(stat.rsplit(")", 1)[1].split()[1]) == os.getpid():
                    peaks[entry] = max(peaks.get(entry, 0.0), hwm(entry))

path, fps = sys.argv[1], float(sys.argv[2])
before = hwm()
threading.Thread(target=watch, daemon=True).start()
wall, cpu = time.perf_counter(), time.process_time()
features = audio.analyse(path, fps)
wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
done.set()
audio.features._analyse.cache_clear()
tracemalloc.start()  # a second, traced run: what numpy allocates (tracing slows it, so it is not timed)
audio.analyse(path, fps)
_, traced = tracemalloc.get_traced_memory()
children = resource.getrusage(resource.RUSAGE_CHILDREN)  # ffmpeg's CPU, both runs: halved below
print(json.dumps(dict(wall=wall, cpu=cpu, ffmpeg_cpu=(children.ru_utime + children.ru_stime) / 2, rss=hwm(),
                      rss_before=before, ffmpeg_rss=max(peaks.values(), default=0.0), traced=traced / 2 ** 20,
                      bpm=features.bpm, frames=features.frames, duration=features.duration)))
"""

def synth(seconds: float, rate: int = RATE, bpm: float = BPM, seed: int = 0) -> np.ndarray:
    """A stereo dance-music sketch, frames x 2 in [-1, 1]."""
    rng = np.random.default_rng(seed)
    n = int(seconds * rate)
    mix = np.zeros(n)
    beat = 60.0 / bpm
    beats = np.arange(0, seconds, beat)
    bars = len(beats) // 4

    def hit(template: np.ndarray, at: float, gain: float = 1.0) -> None:
        i = int(at * rate)
        part = template[: max(0, n - i)]
        mix[i: i + len(part)] += gain * part

    def envelope(length: float, decay: float) -> np.ndarray:
        return np.exp(-np.arange(int(length * rate)) / (decay * rate))

    k = np.arange(int(0.35 * rate)) / rate
    kick = np.sin(2 * np.pi * (45 * k + 40 * 0.04 * (1 - np.exp(-k / 0.04)))) * envelope(0.35, 0.08)
    snare = rng.standard_normal(int(0.2 * rate)) * envelope(0.2, 0.05)
    snare = np.diff(snare, prepend=0.0) * 0.5 + 0.3 * np.sin(2 * np.pi * 190 * np.arange(len(snare)) / rate) * \
        envelope(0.2, 0.04)
    hat = np.diff(rng.standard_normal(int(0.06 * rate)), prepend=0.0) * envelope(0.06, 0.012)

    def drums(bar: int) -> bool:
        return 8 <= bar % 64 < 48  # intro and breakdown without drums

    for i, at in enumerate(beats):
        bar = i // 4
        if drums(bar):
            hit(kick, at, 0.9)
            if i % 2 == 1:
                hit(snare, at, 0.35)
        for half in (0.0, 0.5):
            hit(hat, at + half * beat, 0.12 if drums(bar) else 0.05)
    roots = [55.0, 43.65, 49.0, 41.2]  # A1, F1, G1, E1
    t_bar = np.arange(int(4 * beat * rate)) / rate
    for bar in range(bars + 1):
        f = roots[bar % 4]
        bass = (np.sin(2 * np.pi * f * t_bar) + 0.4 * np.sin(2 * np.pi * 2 * f * t_bar)) * \
            (0.6 + 0.4 * np.exp(-(t_bar % beat) / 0.12))
        chord = sum(np.sin(2 * np.pi * f * 4 * r * t_bar) for r in (1.0, 1.26, 1.5)) / 3
        hit(0.25 * bass + 0.1 * chord * (0.5 + 0.5 * np.sin(np.pi * t_bar / (4 * beat))), bar * 4 * beat)
    mix /= np.abs(mix).max() / 0.9
    pan = 0.1 * np.sin(2 * np.pi * 0.1 * np.arange(n) / rate)
    return np.column_stack([mix * (1 - pan), mix * (1 + pan)]).clip(-1, 1)


def measure(path: Path, fps: float) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-c", CHILD, str(path), str(fps)], capture_output=True, text=True,
                         check=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=180.0, help="track length (default: 3 minutes)")
    parser.add_argument("--fps", type=float, default=24.0, help="frame rate of the features")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--write-track", metavar="PATH", help="write the synthetic track (WAV) and exit")
    args = parser.parse_args()
    if args.write_track:
        audio.write_wav(args.write_track, synth(args.seconds), RATE)
        print(f"wrote {args.write_track}: {args.seconds:g} s at {BPM:g} BPM")
        return
    from bench_engine import cpu_summary

    print(f"CPU: {cpu_summary()}; load average {os.getloadavg()[0]:.1f} at the start (wall times grow with other "
          f"work on the machine; CPU seconds do not)")
    print(f"track: {args.seconds:g} s synthetic mix at {BPM:g} BPM, stereo 44.1 kHz; features at {args.fps:g} fps")
    with tempfile.TemporaryDirectory() as tmp:
        wav, m4a = Path(tmp) / "track.wav", Path(tmp) / "track.m4a"
        audio.write_wav(wav, synth(args.seconds), RATE)
        run_ffmpeg(["-y", "-nostdin", "-i", file_arg(wav), "-c:a", "aac", "-b:a", "192k", file_arg(m4a)],
                   "cannot encode the benchmark track", "check the bundled ffmpeg")
        for path in (wav, m4a):
            runs = [measure(path, args.fps) for _ in range(args.repeats)]

            def median(key):
                return statistics.median(r[key] for r in runs)

            r = runs[0]
            if path == m4a:
                print(f"load average {os.getloadavg()[0]:.1f}")
            print(f"{path.suffix[1:]:>4} ({path.stat().st_size / 2 ** 20:.1f} MB): analysis {median('wall'):.2f} s "
                  f"wall (median of {args.repeats}; {args.seconds / median('wall'):.0f}x real time), "
                  f"{median('cpu'):.2f} s Python CPU + {median('ffmpeg_cpu'):.2f} s ffmpeg CPU; "
                  f"peak RSS {median('rss'):.0f} MB ({median('rss') - median('rss_before'):.0f} MB over the "
                  f"interpreter with zoomdream.audio loaded), ffmpeg {median('ffmpeg_rss'):.0f} MB; numpy peak "
                  f"{median('traced'):.1f} MB; {r['frames']} frames, {r['duration']:.2f} s, "
                  f"tempo {r['bpm']:.1f} BPM ({100 * (r['bpm'] - BPM) / BPM:+.1f}%)")


if __name__ == "__main__":
    main()
