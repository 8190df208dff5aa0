"""Flicker of a stylized clip, measured as the warping error of Lai et al. (ECCV 2018).

E = mean over consecutive frames of |O_t - warp(O_{t-1})| over pixels that are not occluded, with the flow
and the occlusion mask taken from the *source* frames (values in [0, 1]). Prints it for the input itself,
for naive per-frame dreaming (each frame dreamed independently from its source: --blend 0 --smooth 0
--flow none), for zoomdream at the given (default: the default) settings, and for a reference setting
(``--reference``, default the defaults before issue 22: blend 0.5, smooth 0.5). Beside each, how visible the
dream is: the mean absolute difference from the source (0..1).

    python scripts/flicker.py CLIP [--duration 2] [--max-size 256] [--steps 8] [--blend B --smooth S]
    python scripts/flicker.py CLIP --flow-sizes 0,320,160   # flow estimated smaller, against full size

The last line: ``over_naive=`` and ``over_input=`` (zoomdream's error over naive dreaming's and over the
input's) and ``dream=`` (its visibility over the reference's); with ``--flow-sizes``, ``over_full_N=`` (the
error with flow estimated at N px over the first size's).
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("clip")
    parser.add_argument("--duration", type=float, default=2.0)
    parser.add_argument("--max-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=None, help="default: zoomdream video's")
    parser.add_argument("--blend", type=float, default=None, help="default: zoomdream video's")
    parser.add_argument("--smooth", type=float, default=None, help="default: zoomdream video's")
    parser.add_argument("--reference", default="0.5,0.5", help="BLEND,SMOOTH of the reference row ('' for none)")
    parser.add_argument("--keep", help="keep the outputs in this folder")
    parser.add_argument("--flow-sizes", default="",
                        help="instead of the rows above: zoomdream at each --flow-size given (e.g. 0,320,160), "
                             "each against the first")
    args = parser.parse_args()

    import numpy as np

    from zoomdream import media, runner
    from zoomdream.config import make_job
    from zoomdream.flow import warping_error
    from zoomdream.models import load_model

    work = args.keep or tempfile.mkdtemp(prefix="flicker_")
    common = dict(command="video", input=args.clip, duration=args.duration, max_size=args.max_size)
    if args.steps is not None:
        common["steps"] = args.steps
    ours = dict(common, **{k: v for k, v in (("blend", args.blend), ("smooth", args.smooth)) if v is not None})
    runs = {"naive": dict(common, flow="none", blend=0.0, smooth=0.0), "zoomdream": ours}
    sizes = [int(v) for v in args.flow_sizes.split(",") if v]
    if sizes:
        runs = {f"flow {size}": dict(ours, flow_size=size) for size in sizes}
    elif args.reference:
        blend, smooth = (float(v) for v in args.reference.split(","))
        runs["reference"] = dict(common, blend=blend, smooth=smooth)

    def sources():
        return media.read_video(args.clip, duration=args.duration, max_size=args.max_size)

    print(f"clip {args.clip}, {args.duration} s at max side {args.max_size}")
    errors = {"input": warping_error(sources(), sources())}
    print(f"input     warping error {errors['input']:.4f}")
    model = load_model()
    dream = {}
    for name, values in runs.items():
        frames = os.path.join(work, name)
        job = make_job(dict(values, output=os.path.join(work, f"{name}.mp4"), frames_dir=frames))
        start = time.perf_counter()
        runner.render(job, progress=False, model=model)
        seconds = time.perf_counter() - start
        paths = media.list_frames(frames)
        errors[name] = warping_error((media.read_image(p) for p in paths), sources())
        dream[name] = float(np.mean([np.abs(media.read_image(p).astype(np.float32) - s.astype(np.float32)).mean()
                                     for p, s in zip(paths, sources())]) / 255)
        against = errors["naive"] if "naive" in errors else errors[next(iter(runs))]
        print(f"{name:9s} warping error {errors[name]:.4f} ({errors[name] / against:.3f}x "
              f"{'naive' if 'naive' in errors else next(iter(runs))}, {errors[name] / errors['input']:.2f}x input), "
              f"dream {dream[name]:.4f} ({len(paths)} frames, {seconds / len(paths):.2f} s/frame; steps {job.steps}, "
              f"octaves {job.octaves}, flow {job.flow}, flow size {job.flow_size}, blend {job.blend}, "
              f"smooth {job.smooth})", flush=True)
    if sizes:
        first = errors[next(iter(runs))]
        print(" ".join(f"over_full_{size}={errors[f'flow {size}'] / first:.3f}" for size in sizes[1:]))
        return
    reference = dream.get("reference", dream["zoomdream"])
    ours = errors["zoomdream"]
    print(f"over_naive={ours / errors['naive']:.3f} over_input={ours / errors['input']:.3f} "
          f"dream={dream['zoomdream'] / reference:.3f}")


if __name__ == "__main__":
    main()
