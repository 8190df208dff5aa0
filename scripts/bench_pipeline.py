"""End-to-end seconds per frame over dreaming seconds per frame, for zoom and video at 1280x720 and 1920x1080.

On a GPU the dream is short and everything else a render does per frame (warping, colour matching, optical
flow, encoding, the resume checkpoint) decides the speed. This benchmark shows that cost on any machine: by
default the dream is *simulated*, a dreamer that sleeps for the GPU's measured time per frame (so it uses
no CPU, as a GPU would not) and returns a plausible dreamed frame (the input plus a moving high-frequency
texture, so the encoder sees dream-like detail). ``--real`` dreams with the model instead (on a GPU machine:
``KERAS_BACKEND=jax``) and divides by the time spent in ``Dreamer.dream``.

Default dream times are the H200's measured figures: zoom 0.03 s at 1280x720 and 0.05 s at 1920x1080,
video 0.095 s (1080p; the same is used at 720p). Prints one line per case and last ``ratio=``, the zoom's
ratio at 1280x720; before it ``idle_ratio=`` (the same from CPU seconds, on an idle machine of these cores)
and ``video_idle_ratio=`` (the video's at 1280x720).

    python scripts/bench_pipeline.py [--frames 48] [--sizes 1280x720,1920x1080] [--cases zoom,video]
                                     [--dream-s S] [--real] [--cores N]
"""
from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout, not an installed copy

import cv2
import numpy as np

ZOOM_DREAM_S = {"1280x720": 0.03, "1920x1080": 0.05}
VIDEO_DREAM_S = 0.095
CLIP = Path(__file__).resolve().parents[1] / "tests" / "data" / "big_buck_bunny_432_433.webm"


class SimulatedDream:
    """Stands in for ``Dreamer.dream``: sleeps ``seconds`` (no CPU, like a GPU) and returns the input with a
    band-limited texture added at a fresh offset each call, clipped to [-1, 1] like a dream."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.texture = {}
        self.calls = 0
        self.cpu = 0.0
        self.after_first = None  # (the render thread's CPU clock, self.cpu) as frame 1's dream starts

    def __call__(self, dreamer, image, settings=None, *args, **kwargs):
        start, cpu = time.perf_counter(), time.thread_time()
        if self.calls == 1:
            self.after_first = (cpu, self.cpu)
        h, w = image.shape[:2]
        if (h, w) not in self.texture:
            import cv2

            rng = np.random.default_rng(0)
            coarse = rng.standard_normal((h // 3 + 1, w // 3 + 1, 3)).astype(np.float32)
            self.texture[(h, w)] = 0.15 * cv2.resize(coarse, (w + 64, h + 64), interpolation=cv2.INTER_CUBIC)
        self.calls += 1
        dy, dx = (self.calls * 7) % 64, (self.calls * 13) % 64
        out = np.clip(np.asarray(image, np.float32) + self.texture[(h, w)][dy:dy + h, dx:dx + w], -1.0, 1.0)
        self.cpu += time.thread_time() - cpu  # a GPU's work, not the render's
        time.sleep(max(0.0, self.seconds - (time.perf_counter() - start)))
        return out


def source_clip(folder: str, size: str, seconds: float) -> str:
    """The test clip scaled up to ``size`` and looped to ``seconds`` (a stand-in for real footage)."""
    import imageio_ffmpeg

    w, h = size.split("x")
    path = os.path.join(folder, f"clip-{size}.mp4")
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", "-stream_loop", "-1", "-i", str(CLIP),
                    "-t", f"{seconds}", "-vf", f"scale={w}:{h}", "-c:v", "libx264", "-crf", "18", "-preset",
                    "veryfast", "-an", path], check=True)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=48)
    parser.add_argument("--sizes", default="1280x720,1920x1080")
    parser.add_argument("--cases", default="zoom,video")
    parser.add_argument("--dream-s", type=float, default=None, help="simulated dream seconds (default: H200's)")
    parser.add_argument("--real", action="store_true", help="dream with the model, not a simulated dreamer")
    parser.add_argument("--model", default="efficientnet-lite0")
    parser.add_argument("--cores", default=str(os.cpu_count()),
                        help="the idle-machine ratio for these core counts, e.g. 2,16 (default: this machine's): "
                             "estimates from the CPU seconds measured here; idle_ratio= is for the first")
    args = parser.parse_args()

    from zoomdream import backend, runner
    from zoomdream.ascent import Dreamer
    from zoomdream.config import make_job
    from zoomdream.models import load_model
    from zoomdream.precision import resolve
    from zoomdream.sinks import MemorySink

    sys.path.insert(0, os.path.dirname(__file__))
    from bench_engine import cpu_summary
    from bench_zoom import timed

    precision = resolve("auto", args.model)
    kind = "real dream" if args.real else "simulated dream (sleeps, no CPU)"
    print(f"cpu: {cpu_summary()}; {os.cpu_count()} cores; backend {backend.name()}; precision {precision}; {kind}")
    model = load_model(args.model, precision=precision)
    real_dream = Dreamer.dream
    spent: list[float] = []

    ratios, idles = {}, {}
    with tempfile.TemporaryDirectory() as work:
        for case in args.cases.split(","):
            for size in args.sizes.split(","):
                seconds = args.dream_s or (ZOOM_DREAM_S.get(size, 0.05) if case == "zoom" else VIDEO_DREAM_S)
                simulated = SimulatedDream(seconds)
                Dreamer.dream = timed(real_dream if args.real else simulated, spent)
                out = os.path.join(work, f"{case}-{size}.mp4")
                if case == "zoom":
                    values = dict(command="zoom", noise=True, size=size, frames=args.frames + 1)
                else:
                    fps = 24
                    values = dict(command="video", input=source_clip(work, size, (args.frames + 1) / fps + 0.5),
                                  duration=(args.frames + 1) / fps)
                job = make_job(dict(values, model=args.model, output=out))
                spent.clear()
                marks: list[float] = []
                disk: list[int] = []

                def mark(index, frame, last=args.frames, work=runner.work_folder(Path(out))):
                    marks.append(time.perf_counter())
                    if index == last:  # the work folder as a kill now would leave it, and the old PNG's size
                        disk.append(sum(p.stat().st_size for p in work.rglob("*") if p.is_file()))
                        disk.append(len(cv2.imencode(".png", frame)[1]))

                before = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
                serial = time.thread_time()
                runner.render(job, progress=False, model=model, sinks=(MemorySink(on_frame=mark),))
                end = time.perf_counter()
                frames = len(marks) - 1
                serial = (time.thread_time() - serial - simulated.cpu) / (frames + 1)
                if not args.real:  # frames 1..N and closing the output, without frame 0's one-off work
                    clock, dreamed = simulated.after_first
                    serial = (time.thread_time() - clock - (simulated.cpu - dreamed)) / frames
                after = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
                cpu = sum(a.ru_utime + a.ru_stime - b.ru_utime - b.ru_stime for a, b in zip(after, before))
                cpu -= simulated.cpu
                total = end - marks[0]  # frames 1..N, keeping them, and closing the output
                dreaming = sum(spent[1:]) if args.real else frames * seconds
                ratio = total / dreaming
                ratios[(case, size)] = ratio
                minutes3 = 3 * 60 * 24
                # CPU seconds do not depend on what else the machine runs: on an idle one a frame takes at least
                # the dream plus the render thread's own work, and at least all the CPU work over the cores.
                per = frames + 1
                idle = {n: max(dreaming / frames + serial, cpu / per / n) / (dreaming / frames)
                        for n in (int(v) for v in args.cores.split(","))}
                print(f"{case} {size}: {total / frames:.3f} s/frame end to end, {dreaming / frames:.3f} s/frame "
                      f"dreaming, ratio {ratio:.2f} ({frames} frames); CPU {cpu / per:.3f} s/frame in all, "
                      f"{serial:.3f} on the render thread: ratio on an idle machine of "
                      f"{', '.join(f'{n} cores {r:.2f}' for n, r in idle.items())}; work folder "
                      f"{disk[0] / per / 1e6:.2f} MB/frame (3 min at 24 fps: "
                      f"{disk[0] / per * minutes3 / 1e9:.1f} GB), a PNG per frame {disk[1] / 1e6:.2f} MB "
                      f"({disk[1] * minutes3 / 1e9:.1f} GB)", flush=True)
                idles[(case, size)] = next(iter(idle.values()))
    key = ("zoom", "1280x720") if ("zoom", "1280x720") in ratios else max(ratios, key=ratios.get)
    if ("video", "1280x720") in idles:
        print(f"video_idle_ratio={idles[('video', '1280x720')]:.3f}")
    print(f"idle_ratio={idles[key]:.3f}")
    print(f"ratio={ratios[key]:.3f}")


if __name__ == "__main__":
    main()
