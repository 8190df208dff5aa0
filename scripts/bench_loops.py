"""Seamless loops and frame interpolation, measured.

1. Loop seam: a 96-frame 256x256 noise zoom with --loop, and small, short loops (48 frames of 128x128, 24 of
   64x64), whose closing span is a few dozen frames; the warping error (Lai et al., with the exact camera
   map in place of optical flow) from the last frame to the first, over the median error between consecutive
   frames inside the loop; with and without rotation, and with --interpolate 2. Also the worst step of the
   closing span (the steps into its frames, the last three quarters of the loop, and the wrap), where the
   loop turns back toward its start, over the same median; and on frames blurred by 3 px, where the morph
   of whole shapes shows (blurred after the camera map, as ``camera_error(blur=3)`` does), over the median
   blurred step before the span. With --interpolate 2 the free steps alternate, so the worst closing step is
   also given over the median free step of its kind (onto a dreamed frame, or onto an in-between), plain and
   blurred.
2. Interpolation quality: a zoom and a clip rendered normally; every other frame rebuilt from its two
   neighbours; PSNR against the dreamed frame for zoomdream's interpolation, a plain cross-fade and ffmpeg's
   minterpolate (motion-compensated, the bundled ffmpeg). And the in-betweens' sharpness: the variance of the
   Laplacian of frames made half way between each pair of the zoom's frames, as `interpolate --factor 2`
   makes them (from the frames alone) and as `zoom --interpolate 2` does (along the camera path), over the
   originals' (soft in-betweens make the texture pulse every other frame).
3. Speed: seconds of compute per second of 24 fps video for a 1280x720 zoom with --interpolate 1, 2 and 4.

    python scripts/bench_loops.py [--only seam|quality|speed]
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
sys.path.insert(0, str(ROOT))  # this checkout's zoomdream, not an installed copy


def render(model, **values):
    from zoomdream import runner
    from zoomdream.config import make_job
    from zoomdream.sinks import MemorySink

    memory, marks = MemorySink(), []
    clock = MemorySink(on_frame=lambda index, frame: marks.append(time.perf_counter()))
    with tempfile.TemporaryDirectory() as work:
        job = make_job(dict(values, output=os.path.join(work, "out.mp4"), precision=model.precision))
        runner.render(job, progress=False, model=model, sinks=(memory, clock))
    return [memory.frames[i] for i in sorted(memory.frames)], marks


LOOPS = ([dict(size="256x256", frames=96, angle=str(angle), interpolate=interpolate)
          for angle, interpolate in [(0, 1), (1, 1), (0, 2), (1, 2)]]
         # small and short loops close over a few dozen frames (the check: 128x128, 48, 3 steps, 1 octave)
         + [dict(size="128x128", frames=48, steps=3, octaves=1, interpolate=n) for n in (1, 2)]
         + [dict(size="128x128", frames=48), dict(size="64x64", frames=24, steps=3, octaves=1)])


def seam(model, loops: list[dict] = LOOPS) -> None:
    from zoomdream.config import make_job
    from zoomdream.interpolation import camera_error
    from zoomdream.loops.zoom import resolve
    from zoomdream.frames.warp import as_3x3, transform_matrix

    for loop in loops:
        values = dict(command="zoom", noise=True, loop=True, **loop)
        frames, _ = render(model, **values)
        span = resolve(make_job(dict(values, output="loop.mp4"))).loop_frames
        interpolate = loop.get("interpolate", 1)
        width, height = (int(v) for v in loop["size"].split("x"))
        step = as_3x3(transform_matrix(width, height, zoom=1.02, angle=float(loop.get("angle", 0))))
        inside = [camera_error(a, b, step) for a, b in zip(frames, frames[1:])]
        median = statistics.median(inside)
        seam = camera_error(frames[-1], frames[0], step)
        # the wrap ends on a dreamed frame: also compare it with the steps inside that end on one
        onto_dreamed = statistics.median(e for t, e in enumerate(inside, 1) if t % interpolate == 0)
        # the closing span, where the loop turns back toward frame 0: the steps into its frames, and the wrap.
        # Pixel-scale dream texture dominates the warping error; on frames blurred by 3 px the steps show where
        # whole shapes morph, here over the median blurred step of the free zoom before the span
        closing = max(inside[-span:] + [seam])
        # an interpolated loop's free steps alternate (onto an in-between frame about 1.5x those onto a dreamed
        # one): each closing step also over the median free step of its kind
        onto = [(t + 1) % interpolate == 0 for t in range(len(frames))]
        kinds = {kind: statistics.median(e for e, o in zip(inside, onto) if o == kind) for kind in set(onto)}
        closing_kind = max(e / kinds[o] for e, o in zip((inside + [seam])[-span - 1:], onto[-span - 1:]))
        shape_steps = [camera_error(a, b, step, blur=3) for a, b in zip(frames, frames[1:] + frames[:1])]
        shape_closing = max(shape_steps[-span - 1:]) / statistics.median(shape_steps[:-span - 1])
        free = list(zip(shape_steps, onto))[:-span - 1]
        shape_kinds = {kind: statistics.median(e for e, o in free if o == kind) for kind in set(onto)}
        shape_kind = max(e / shape_kinds[o] for e, o in zip(shape_steps[-span - 1:], onto[-span - 1:]))
        settings = ", ".join(f"{k} {v}" for k, v in loop.items())
        print(f"loop {settings}: seam/median {seam / median:.2f} (over steps onto a dreamed frame "
              f"{seam / onto_dreamed:.2f}); worst step of the closing {span} / median {closing / median:.2f} "
              f"(over its kind's {closing_kind:.2f}; blurred by 3 px, over the free zoom's: {shape_closing:.2f}, "
              f"over its kind's {shape_kind:.2f})", flush=True)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(255.0 ** 2 / max(np.mean((a.astype(float) - b.astype(float)) ** 2), 1e-12)))


def minterpolate(frames: list[np.ndarray], fps: float) -> list[np.ndarray]:
    """ffmpeg's motion-compensated interpolation of the even frames back to the full rate (lossless in/out)."""
    from zoomdream import media
    from zoomdream.media.ffmpeg import ffmpeg_exe

    with tempfile.TemporaryDirectory() as work:
        half = os.path.join(work, "half.mkv")
        with media.VideoWriter(half, fps / 2, crf=0) as writer:
            for frame in frames[::2]:
                writer.write(frame)
        out = os.path.join(work, "full.mkv")
        subprocess.run([ffmpeg_exe(), "-v", "error", "-i", half, "-vf", f"minterpolate=fps={fps}:mi_mode=mci",
                        "-c:v", "libx264", "-crf", "0", "-pix_fmt", "yuv444p", out], check=True)
        return list(media.read_video(out))


def rebuild(name: str, frames: list[np.ndarray], fps: float, made) -> None:
    """PSNR of the odd frames rebuilt from their even neighbours, by ``made(k)``, cross-fade and minterpolate."""
    from zoomdream.interpolation import blend

    odd = range(1, len(frames) - 1, 2)
    ours = statistics.mean(psnr(made(k), frames[k]) for k in odd)
    fade = statistics.mean(psnr(blend(frames[k - 1].astype(np.float32), frames[k + 1].astype(np.float32), 0.5),
                                frames[k]) for k in odd)
    mci = minterpolate(frames, fps)
    theirs = statistics.mean(psnr(mci[k], frames[k]) for k in odd if k < len(mci))
    print(f"{name}: PSNR zoomdream {ours:.2f} dB, cross-fade {fade:.2f} dB, minterpolate {theirs:.2f} dB",
          flush=True)


def laplacian_variance(frame: np.ndarray) -> float:
    import cv2

    return float(cv2.Laplacian(cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY), cv2.CV_64F).var())


def quality(model) -> None:
    from zoomdream import media
    from zoomdream.flow import motion_between
    from zoomdream.interpolation import between_affine, between_frames, between_sources
    from zoomdream.frames.warp import as_3x3, transform_matrix

    frames, _ = render(model, command="zoom", noise=True, size="320x240", frames=25, zoom="1.03", angle="0.5")
    step = as_3x3(transform_matrix(320, 240, zoom=1.03, angle=0.5))
    rebuild("zoom 320x240 (camera path)", frames, 24, lambda k: between_affine(frames[k - 1], frames[k + 1], 0.5,
                                                                               step, step))
    half = as_3x3(transform_matrix(320, 240, zoom=1.03 ** 0.5, angle=0.25))
    pairs = list(zip(frames[1:], frames[2:]))  # after frame 0, which gets the still's far finer dream
    original = statistics.mean(laplacian_variance(f) for f in frames[1:])
    for name, made in (("interpolate --factor 2 (frames alone)", lambda a, b: between_frames(a, b, 0.5)),
                       ("zoom --interpolate 2 (camera path)", lambda a, b: between_affine(a, b, 0.5, half, half))):
        between = statistics.mean(laplacian_variance(made(a, b)) for a, b in pairs)
        print(f"zoom 320x240, in-betweens of {name}: Laplacian variance {between:.0f} against {original:.0f} on "
              f"the originals ({between / original:.0%})", flush=True)
    for clip in ("example.mp4", "big_buck_bunny_432_433.webm"):
        values = dict(command="video", input=str(DATA / clip), max_size=320, duration=1.0)
        frames, _ = render(model, **values)
        sources = list(media.read_video(DATA / clip, duration=1.0, max_size=320))
        fps = media.probe_video(DATA / clip).fps
        rebuild(f"{clip} at 320 px (source flow)", frames, fps,
                lambda k: between_sources(frames[k - 1], frames[k + 1], 0.5,
                                          motion_between(sources[k - 1], sources[k]),
                                          motion_between(sources[k + 1], sources[k])))
        rebuild(f"{clip} at 320 px (frames alone, as `interpolate`)", frames, fps,
                lambda k: between_frames(frames[k - 1], frames[k + 1], 0.5))


def speed(model) -> None:
    for n in (1, 2, 4):
        frames, marks = render(model, command="zoom", noise=True, size="1280x720", frames=1 + 2 * 4, interpolate=n)
        seconds = (marks[-1] - marks[0]) / (len(marks) - 1)  # after frame 0, which gets the still's full dream
        print(f"1280x720 zoom, --interpolate {n}: {seconds:.2f} s per frame, {seconds * 24:.0f} s of compute per "
              f"second of 24 fps video", flush=True)
    from zoomdream.interpolation import between_affine
    from zoomdream.frames.warp import as_3x3, transform_matrix

    step = as_3x3(transform_matrix(1280, 720, zoom=1.02))
    start = time.perf_counter()
    for _ in range(5):
        between_affine(frames[0], frames[4], 0.5, step, step)
    print(f"one 1280x720 in-between frame: {(time.perf_counter() - start) / 5 * 1000:.0f} ms", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=("seam", "quality", "speed"), help="run one part")
    args = parser.parse_args()
    from bench_engine import cpu_summary

    from zoomdream import backend
    from zoomdream.models import load_model
    from zoomdream.precision import resolve

    precision = resolve("auto", "efficientnet-lite0")
    print(f"cpu: {cpu_summary()}; backend {backend.name()}; precision {precision}")
    model = load_model("efficientnet-lite0", precision=precision)
    for part in (seam, quality, speed):
        if args.only in (None, part.__name__):
            part(model)


if __name__ == "__main__":
    main()
