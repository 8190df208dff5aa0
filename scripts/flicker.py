"""Flicker of a stylized clip, measured as the warping error of Lai et al. (ECCV 2018).

E = mean over consecutive frames of |O_t - warp(O_{t-1})| over pixels that are not occluded, with the flow
and the occlusion mask taken from the *source* frames (values in [0, 1]). Prints it for the input itself,
for naive per-frame dreaming (each frame dreamed independently from its source) and for zoomdream's
flow-coherent output, all on the same clip and dream settings.

    python scripts/flicker.py CLIP [--duration 2] [--max-size 256] [--steps 8]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("clip")
    parser.add_argument("--duration", type=float, default=2.0)
    parser.add_argument("--max-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=None, help="default: zoomdream video's")
    parser.add_argument("--blend", type=float, default=None, help="default: zoomdream video's")
    parser.add_argument("--keep", help="keep the outputs in this folder")
    args = parser.parse_args()

    from zoomdream import media, runner
    from zoomdream.config import make_job
    from zoomdream.flow import warping_error
    from zoomdream.models import load_model

    work = args.keep or tempfile.mkdtemp(prefix="flicker_")
    common = dict(command="video", input=args.clip, duration=args.duration, max_size=args.max_size)
    if args.steps is not None:
        common["steps"] = args.steps
    ours = dict(common, **({"blend": args.blend} if args.blend is not None else {}))
    runs = {"naive": dict(common, flow="none", blend=0.0), "zoomdream": ours}

    def sources():
        return media.read_video(args.clip, duration=args.duration, max_size=args.max_size)

    print(f"clip {args.clip}, {args.duration} s at max side {args.max_size}")
    print(f"input     warping error {warping_error(sources(), sources()):.4f}")
    model = load_model()
    for name, values in runs.items():
        frames = os.path.join(work, name)
        job = make_job(dict(values, output=os.path.join(work, f"{name}.mp4"), frames_dir=frames))
        start = time.perf_counter()
        runner.render(job, progress=False, model=model)
        seconds = time.perf_counter() - start
        outputs = (media.read_image(p) for p in media.list_frames(frames))
        count = len(media.list_frames(frames))
        print(f"{name:9s} warping error {warping_error(outputs, sources()):.4f} "
              f"({count} frames, {seconds / count:.2f} s/frame; steps {job.steps}, octaves {job.octaves}, "
              f"flow {job.flow}, blend {job.blend})")


if __name__ == "__main__":
    main()
