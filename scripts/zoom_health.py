"""Does a long infinite zoom stay healthy? Renders a zoom and prints per-frame health curves.

Failure modes of feedback dreaming: washing out to grey (colourfulness falls), saturating to flat colour
(clipped pixels rise, detail falls) or dissolving into pixel noise (high-frequency energy climbs). Printed
every ``--every`` frames:

- clipped: fraction of pixels with a channel at 0 or 255
- colourful: Hasler & Suesstrunk (2003) colourfulness (about 30-60 for a vivid photo, near 0 for grey)
- hf: high-frequency energy, mean |Laplacian| / mean |gradient| at full resolution (rises with pixel noise)

    python scripts/zoom_health.py --frames 1000 --size 320x240 [--color-match 0] [--csv curves.csv]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import cv2
import numpy as np


def health(frame: np.ndarray) -> tuple[float, float, float]:
    f = frame.astype(np.float32)
    clipped = float(((frame == 0) | (frame == 255)).any(axis=2).mean())
    rg, yb = f[..., 0] - f[..., 1], 0.5 * (f[..., 0] + f[..., 1]) - f[..., 2]
    colourful = float(np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean()))
    gray = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY).astype(np.float32)
    lap = np.abs(cv2.Laplacian(gray, cv2.CV_32F)).mean()
    grad = np.hypot(cv2.Sobel(gray, cv2.CV_32F, 1, 0), cv2.Sobel(gray, cv2.CV_32F, 0, 1)).mean() + 1e-6
    return clipped, colourful, float(lap / grad)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input", nargs="?", help="start image (default: seeded noise)")
    parser.add_argument("--frames", type=int, default=1000)
    parser.add_argument("--size", default="320x240")
    parser.add_argument("--color-match", type=float, default=None, help="override the default")
    parser.add_argument("--every", type=int, default=50, help="print every N frames")
    parser.add_argument("--csv", help="write every frame's figures here")
    parser.add_argument("--keep", help="keep the frames in this folder")
    args = parser.parse_args()

    from zoomdream import media, runner
    from zoomdream.config import make_job

    work = args.keep or tempfile.mkdtemp(prefix="zoom_health_")
    values = dict(command="zoom", frames=args.frames, output=os.path.join(work, "zoom.mp4"), frames_dir=work)
    if args.input:
        values.update(input=args.input, max_size=max(int(v) for v in args.size.split("x")))
    else:
        values.update(noise=True, size=args.size)
    if args.color_match is not None:
        values["color_match"] = args.color_match
    job = make_job(values)
    start = time.perf_counter()
    runner.render(job)
    seconds = time.perf_counter() - start
    print(f"{args.frames} frames in {seconds:.0f} s ({seconds / args.frames:.2f} s/frame); "
          f"color_match={job.color_match}")
    rows = [health(media.read_image(p)) for p in media.list_frames(work)]
    print(f"{'frame':>6} {'clipped':>8} {'colourful':>10} {'hf':>6}")
    for t, (clipped, colourful, hf) in enumerate(rows):
        if t % args.every == 0 or t == len(rows) - 1:
            print(f"{t:6d} {clipped:8.4f} {colourful:10.1f} {hf:6.3f}")
    if args.csv:
        with open(args.csv, "w") as f:
            f.write("frame,clipped,colourful,hf\n")
            f.writelines(f"{t},{c:.5f},{k:.3f},{h:.4f}\n" for t, (c, k, h) in enumerate(rows))


if __name__ == "__main__":
    main()
