"""Does a long infinite zoom stay healthy? Renders a zoom and prints per-frame health curves.

Failure modes of feedback dreaming: washing out to grey (colourfulness falls), saturating to flat colour
(clipped pixels rise, detail falls), dissolving into pixel noise (high-frequency energy climbs), a centre
that goes soft or stays sharper than the rest, and lines through the zoom centre (they map onto themselves,
so the feedback keeps them). Printed every ``--every`` frames, the last four over the ``--window`` frames
before:

- clipped: fraction of pixels with a channel at 0 or 255
- colourful: Hasler & Suesstrunk (2003) colourfulness (about 30-60 for a vivid photo, near 0 for grey)
- hf: high-frequency energy, mean |Laplacian| / mean |gradient| at full resolution (rises with pixel noise)
- colour/hf ratio: the window's mean over that of frames 100-200
- centre/ring: mean |Laplacian| in the central disc (radius 12% of the short side) over that in the ring
  from 30% to 45% of it
- line: edge energy (squared gradient) on the centre row and column over the median row and column, on the
  window's mean profiles (one frame's texture would hide a faint line)

The last line gives the last window's figures as ``name=value``.

    python scripts/zoom_health.py --frames 10000 --size 160x160 [--color-match 0] [--keep DIR] [--csv F]
    python scripts/zoom_health.py --measure DIR          # the frames a --keep run left there
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's zoomdream

import cv2
import numpy as np

BASELINE = (100, 200)  # frames the zoom has settled by, which later frames are held against


def health(frame: np.ndarray) -> tuple[float, float, float]:
    f = frame.astype(np.float32)
    clipped = float(((frame == 0) | (frame == 255)).any(axis=2).mean())
    rg, yb = f[..., 0] - f[..., 1], 0.5 * (f[..., 0] + f[..., 1]) - f[..., 2]
    colourful = float(np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean()))
    gray = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY).astype(np.float32)
    lap = np.abs(cv2.Laplacian(gray, cv2.CV_32F)).mean()
    grad = np.hypot(cv2.Sobel(gray, cv2.CV_32F, 1, 0), cv2.Sobel(gray, cv2.CV_32F, 0, 1)).mean() + 1e-6
    return clipped, colourful, float(lap / grad)


def sharpness(frame: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Centre over ring mean |Laplacian|, and the squared gradient summed along each row and each column."""
    gray = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY).astype(np.float32)
    h, w = gray.shape
    y, x = np.mgrid[:h, :w]
    r = np.hypot(x - (w - 1) / 2, y - (h - 1) / 2) / min(h, w)
    lap = np.abs(cv2.Laplacian(gray, cv2.CV_32F))
    centre_ring = float(lap[r < 0.12].mean() / (lap[(r > 0.3) & (r < 0.45)].mean() + 1e-6))
    energy = cv2.Sobel(gray, cv2.CV_32F, 1, 0) ** 2 + cv2.Sobel(gray, cv2.CV_32F, 0, 1) ** 2
    return centre_ring, energy.mean(axis=1), energy.mean(axis=0)


def line_ratio(rows: np.ndarray, cols: np.ndarray) -> float:
    """Edge energy on the centre row and column (the two nearest the centre, which lies between pixels on an
    even size) over the median row and column."""
    def ratio(profile: np.ndarray) -> float:
        n = len(profile)
        middle = profile[(n - 1) // 2: n // 2 + 1].max()
        return float(middle / (np.median(profile) + 1e-6))
    return max(ratio(rows), ratio(cols))


def measure(paths: list[Path], every: int, window: int, csv: str | None) -> None:
    from zoomdream import media

    per_frame, kept = [], []  # (clipped, colourful, hf, centre/ring), and the row and column profiles
    for p in paths:
        frame = media.read_image(p)
        centre_ring, rows, cols = sharpness(frame)
        per_frame.append(health(frame) + (centre_ring,))
        kept.append((rows, cols))
    table = np.array(per_frame)
    base = table[BASELINE[0]:BASELINE[1]].mean(axis=0) if len(table) > BASELINE[1] else table[len(table) // 2:].mean(0)

    def windowed(t: int) -> tuple[float, float, float, float]:
        lo = max(0, t + 1 - window)
        mean = table[lo:t + 1].mean(axis=0)
        rows = np.mean([kept[i][0] for i in range(lo, t + 1)], axis=0)
        cols = np.mean([kept[i][1] for i in range(lo, t + 1)], axis=0)
        return mean[1] / base[1], mean[2] / base[2], mean[3], line_ratio(rows, cols)

    print(f"{'frame':>6} {'clipped':>8} {'colourful':>10} {'hf':>6} | {'colour':>6} {'hf':>6} {'ctr/ring':>8} "
          f"{'line':>6}  (ratios: window of {window} over frames {BASELINE[0]}-{BASELINE[1]})")
    last = len(table) - 1
    for t, (clipped, colourful, hf, _) in enumerate(table):
        if t % every == 0 or t == last:
            colour, high, centre, line = windowed(t)
            print(f"{t:6d} {clipped:8.4f} {colourful:10.1f} {hf:6.3f} | {colour:6.2f} {high:6.2f} {centre:8.2f} "
                  f"{line:6.2f}")
    colour, high, centre, line = windowed(last)
    clipped = table[max(0, last + 1 - window):, 0].mean()
    print(f"colourful_ratio={colour:.3f} hf_ratio={high:.3f} clipped={clipped:.4f} centre_ring={centre:.3f} "
          f"centre_line={line:.3f}")
    if csv:
        with open(csv, "w") as f:
            f.write("frame,clipped,colourful,hf,centre_ring\n")
            f.writelines(f"{t},{c:.5f},{k:.3f},{h:.4f},{r:.4f}\n" for t, (c, k, h, r) in enumerate(table))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input", nargs="?", help="start image (default: seeded noise)")
    parser.add_argument("--frames", type=int, default=1000)
    parser.add_argument("--size", default="320x240")
    parser.add_argument("--color-match", type=float, default=None, help="override the default")
    parser.add_argument("--every", type=int, default=50, help="print every N frames")
    parser.add_argument("--window", type=int, default=100, help="frames the ratios are taken over")
    parser.add_argument("--csv", help="write every frame's figures here")
    parser.add_argument("--keep", help="keep the frames in this folder (a run there resumes)")
    parser.add_argument("--measure", help="only measure the frames in this folder")
    args = parser.parse_args()

    from zoomdream import media

    if args.measure:
        measure(media.list_frames(args.measure), args.every, args.window, args.csv)
        return
    from zoomdream import runner
    from zoomdream.config import make_job

    work = args.keep or tempfile.mkdtemp(prefix="zoom_health_")
    values = dict(command="zoom", frames=args.frames, output=os.path.join(work, "zoom.mp4"), frames_dir=work,
                  resume=bool(args.keep))
    if args.input:
        values.update(input=args.input, max_size=max(int(v) for v in args.size.split("x")))
    else:
        values.update(noise=True, size=args.size)
    if args.color_match is not None:
        values["color_match"] = args.color_match
    job = make_job(values)
    start = time.perf_counter()
    runner.render(job, progress=False)
    seconds = time.perf_counter() - start
    print(f"{args.frames} frames in {seconds:.0f} s ({seconds / args.frames:.2f} s/frame); "
          f"color_match={job.color_match}", flush=True)
    measure(media.list_frames(work), args.every, args.window, args.csv)


if __name__ == "__main__":
    main()
