"""Where a live frame's time goes: the CPU each part of `zoomdream live` costs a frame, and the live loop alone
(an in-memory source at 30 fps, no ffmpeg) against a simulated accelerator.

Parts, each in CPU milliseconds a frame (all threads and child processes counted, so the figure holds on a
busy machine where wall time does not): ffmpeg's decode and scale of an H.264 source into raw RGB (the
reader's arguments) and Python's read of it, the optical flow (``motion_between`` on ``shrunk`` frames), the
carry, start and smoothing on the dreaming thread (or beside it, ``live.Overlap``), and ffmpeg's H.264 encode of
a stream output. One stream hop: bench_live's sender
read back by its receiver with nothing between (a live frame crosses two). The loop alone: the live runner
over a source that makes a new frame every 1/30 s, the dream a sleep (``bench_pipeline.SimulatedDream``), outputs
that take frames and do nothing, or (``--encode``) a real UDP stream output; first serial (each frame's flow
computed when the dream asks for it), then the pipeline (``live.Ahead``), then overlapped as on an accelerator
(``live.Overlap`` as well).

    python scripts/profile_live.py [--size 1280x720] [--flow-size 320] [--dream 0.03] [--seconds 10] [--encode]
"""
from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout, not an installed copy

import numpy as np

from bench_live import Receiver, Sender, barcode_frame, free_port  # noqa: E402  (scripts/ is on the path when run)
from bench_pipeline import SimulatedDream  # noqa: E402
from zoomdream import live  # noqa: E402
from zoomdream.frames.levels import to_uint8, to_unit  # noqa: E402
from zoomdream.config import make_job  # noqa: E402
from zoomdream.flow import (carried_fast, carry_maps, coherent_init, composed, motion_between, shrunk,  # noqa: E402
                            temporal_blend, upscaled)
from zoomdream.media import stream  # noqa: E402
from zoomdream.media.ffmpeg import Ffmpeg, ffmpeg_exe  # noqa: E402
from zoomdream.media.reader import _read_exact  # noqa: E402


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def cpu_ms(work, repeats: int = 20) -> float:
    """CPU milliseconds (every thread of this process) one call of ``work`` takes."""
    work()
    began = time.process_time()
    for _ in range(repeats):
        work()
    return 1000 * (time.process_time() - began) / repeats


def decode_ms(size: tuple[int, int], frames: int = 150) -> tuple[float, float]:
    """ffmpeg's CPU a frame to decode a 30 fps H.264 MPEG-TS source and scale it to ``size`` (the reader's own
    arguments, less its real-time pacing), and Python's CPU a frame to read the raw frames from the pipe."""
    w, h = size
    clip = Path(os.environ.get("TMPDIR", "/tmp")) / f"zoomdream-profile-{w}x{h}.ts"
    if not clip.exists():
        subprocess.run([ffmpeg_exe(), "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc2=size={w}x{h}:rate=30",
                        "-frames:v", str(frames), "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency",
                        "-g", "30", "-f", "mpegts", str(clip)], check=True)
    args = [a for a in stream.source_args(str(clip), size) if a != "-re"]
    before, began = children_cpu(), time.process_time()
    ff = Ffmpeg(args, stdout=subprocess.PIPE)
    count = 0
    while len(_read_exact(ff.proc.stdout, w * h * 3)) == w * h * 3:
        count += 1
    ff.wait()
    return 1000 * (children_cpu() - before) / count, 1000 * (time.process_time() - began) / count


def encode_ms(size: tuple[int, int], frames: int = 90) -> float:
    """ffmpeg's CPU a frame to encode a stream output (``StreamWriter``'s arguments) of moving frames."""
    w, h = size
    made = [barcode_frame(k, w, h) for k in range(30)]
    writer = stream.StreamWriter(f"udp://127.0.0.1:{free_port()}", size)  # nobody listens: UDP does not care
    before = children_cpu()
    for k in range(frames):
        writer.write(made[k % len(made)])
    writer.close()
    return 1000 * (children_cpu() - before) / frames


def parts(size: tuple[int, int], flow_size: int | None) -> None:
    w, h = size
    a, b = barcode_frame(0, w, h), barcode_frame(2, w, h)
    dreamed = np.clip(a.astype(np.int16) + 20, 0, 255).astype(np.uint8)
    coarse = motion_between(shrunk(a, flow_size), shrunk(b, flow_size))
    motion = upscaled(coarse, size)
    maps = carry_maps(motion[0])
    carry = carried_fast(dreamed, maps)
    decode, read = decode_ms(size)
    chain = {
        "carry": cpu_ms(lambda: carried_fast(dreamed, maps)),
        "start": cpu_ms(lambda: coherent_init(dreamed, a, b, motion=motion, carry=carry)),
        "to_unit+to_uint8": cpu_ms(lambda: to_uint8(to_unit(b))),
        "smoothing": cpu_ms(lambda: temporal_blend(dreamed, dreamed, motion, 0.5, carry=carry)),
    }
    small_a = shrunk(a, flow_size)  # kept from the frame before
    flow = cpu_ms(lambda: carry_maps(upscaled(motion_between(small_a, shrunk(b, flow_size)), size)[0]))
    two = cpu_ms(lambda: carry_maps(upscaled(composed(coarse, coarse), size)[0]))
    print(f"parts {w}x{h}, CPU ms a frame: decode={decode:.1f} (ffmpeg) read={read:.1f} (python) "
          f"flow={flow:.1f} (flow size {flow_size or 'full'}, "
          f"beside the dream) " + " ".join(f"{k}={v:.1f}" for k, v in chain.items())
          + f" (on the dream's thread: {sum(chain.values()):.1f}; overlapped, beside the dream, plus carry "
          f"and maps over two frames={two:.1f}) encode={encode_ms(size):.1f} (ffmpeg)", flush=True)


def one_hop(size: tuple[int, int], seconds: float) -> None:
    """bench_live's sender straight into its receiver, no loop between: the latency of one stream hop
    (encode, UDP, decode), which a live frame pays twice, into the loop and out of it."""
    port = free_port()
    receiver = Receiver(port, size)
    sender = Sender(port, size, 30.0)
    time.sleep(seconds)
    sender.close()
    time.sleep(0.3)
    receiver.close()
    latencies = sorted(receiver.got[k] - sender.sent[k] for k in receiver.got if k in sender.sent) or [float("nan")]
    print(f"one stream hop {size[0]}x{size[1]} at 30 fps: {len(receiver.got)} of {len(sender.sent)} read back, "
          f"latency_p50={1000 * latencies[len(latencies) // 2]:.0f}ms "
          f"latency_p95={1000 * latencies[int(0.95 * (len(latencies) - 1))]:.0f}ms", flush=True)


class MemorySource:
    """A stand-in for the reader: a new frame every 1/fps s, made ahead, taken newest-first like a stream's."""

    def __init__(self, size: tuple[int, int], fps: float = 30.0):
        w, h = size
        self.frames = [barcode_frame(k, w, h) for k in range(30)]
        self.fps, self.source, self.received, self.dropped, self.ended, self.error = fps, "memory", 1, 0, False, None
        self.began, self.last, self.arrived = time.monotonic(), -1, 0.0

    def take(self, timeout: float) -> np.ndarray | None:
        k = int((time.monotonic() - self.began) * self.fps)
        if k == self.last:
            wait = self.began + (k + 1) / self.fps - time.monotonic()
            if wait > timeout:
                time.sleep(timeout)
                return None
            time.sleep(max(0.0, wait))
            k += 1
        self.dropped += max(0, k - self.last - 1)
        self.last, self.arrived = k, self.began + k / self.fps
        return self.frames[k % len(self.frames)]

    def start(self):
        return self

    def forget(self) -> None:
        self.began, self.last, self.dropped = time.monotonic(), -1, 0

    def stalled_for(self) -> float:
        return 0.0


class Inline:
    """The serial loop, for comparison: the frame is taken and prepared only when the dream asks for it."""

    def __init__(self, source):
        self.source, self.prepared = source, 0

    def take(self, timeout: float):
        frame = self.source.next_source(timeout)
        if frame is None:
            return None, 0.0
        began = time.monotonic()
        self.prepared += 1
        return self.source.prepare(frame, self.prepared - 1), time.monotonic() - began

    def expect(self, start_at: float) -> None:
        pass

    def close(self) -> None:
        pass


class NullOutput:
    failed = False

    def put(self, frame: np.ndarray) -> None:
        pass


def loop_alone(size: tuple[int, int], flow_size: int, dream_s: float, seconds: float, model, encode: bool,
               mode: str) -> None:
    """The live loop over an in-memory source: ``serial``, ``pipelined`` (``Ahead``: the CPU's) or
    ``overlapped`` (``Overlap`` as well: an accelerator's)."""
    from zoomdream.ascent import Dreamer
    from zoomdream.live.controls import Controls
    from zoomdream.loops.live import Source, resolve

    w, h = size
    job = make_job({"command": "live", "input": "udp://127.0.0.1:9", "size": f"{w}x{h}", "fps": 30, "steps": 1,
                    "octaves": 1, "flow_size": flow_size})
    settings = resolve(job)
    real, simulated = Dreamer.dream, SimulatedDream(dream_s)
    Dreamer.dream = lambda self, image, settings=None, *a, **k: simulated(self, image, settings)
    pipeline, live.Ahead = live.Ahead, Inline if mode == "serial" else live.Ahead
    outputs = [live.LiveOutput(f"udp://127.0.0.1:{free_port()}", size, 30, print)] if encode else [NullOutput()]
    try:
        source = Source(settings, model, Controls(job), MemorySource(size))
        source.overlap = mode == "overlapped"
        cpu, children, began = time.process_time(), children_cpu(), time.monotonic()
        figures = live.run(source, outputs, live.Status(open(os.devnull, "w")), seconds=seconds)
        wall = time.monotonic() - began
    finally:
        Dreamer.dream, live.Ahead = real, pipeline
        for out in outputs:
            if encode:
                out.close()
    cpu = time.process_time() - cpu + (children_cpu() - children)
    print(f"loop alone ({mode}) {w}x{h} simulated dream {dream_s:.3f} s"
          f"{' + UDP stream output' if encode else ''}: "
          f"fps={figures['frames'] / figures['seconds']:.1f} loop_s={figures['work']:.4f} "
          f"loop_ratio={figures['work'] / dream_s:.2f} level={figures['level']} "
          f"cpu={cpu / wall:.2f} cores (ffmpeg's counted once it ended)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="1280x720")
    parser.add_argument("--flow-size", type=int, default=320)
    parser.add_argument("--dream", type=float, default=0.03, help="the simulated dream's seconds")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--encode", action="store_true", help="the loop alone into a real UDP stream output")
    args = parser.parse_args()
    size = tuple(int(v) for v in args.size.split("x"))
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores", flush=True)
    parts(size, args.flow_size or None)
    one_hop(size, args.seconds)
    from zoomdream.models import load_model
    from zoomdream.precision import resolve

    model = load_model("efficientnet-lite0", None, resolve("auto", "efficientnet-lite0", None))
    for mode in ("serial", "pipelined", "overlapped"):
        loop_alone(size, args.flow_size, args.dream, args.seconds, model, args.encode, mode)
    print(f"load average {os.getloadavg()[0]:.1f}", flush=True)


if __name__ == "__main__":
    main()
