"""What watching costs: the same zoom rendered through the studio's page (latest frame and progress sent to the
client as it dreams) and by the runner alone, alternately, in one process with one model.

    python scripts/bench_studio.py [--size 640x360] [--frames 24] [--repeats 3]

Prints the studio's start-up time (server up, page served), the time from Render to the first frame shown,
seconds per frame each way and the ratio (studio / runner); the last line is ``ratio=``.
"""
from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout, not an installed copy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="640x360")
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from gradio_client import Client

    from zoomdream import runner
    from zoomdream.config import make_job
    from zoomdream.models import load_model
    from zoomdream.studio import form_defaults, form_fields, serve
    from bench_engine import cpu_summary

    print(cpu_summary())
    model = load_model("efficientnet-lite0", precision="float32")
    work = Path(tempfile.mkdtemp(prefix="bench-studio-"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    started = time.perf_counter()
    app = serve(work / "studio", port=port, block=False, models={("efficientnet-lite0", None, "float32"): model})
    client = Client(f"http://127.0.0.1:{port}/", verbose=False)
    print(f"studio start-up (server and client ready): {time.perf_counter() - started:.2f} s")

    settings = dict(noise=True, size=args.size, frames=args.frames, precision="float32", seed=1)
    form = {**form_defaults("zoom"), **settings}
    values = [form[name] for name in form_fields("zoom")]
    studio_times, runner_times, first_shown = [], [], []
    for k in range(args.repeats + 1):  # the first pair warms up the graphs
        started = time.perf_counter()
        job = client.submit(".mp4", *values, api_name="/render_zoom")
        shown = None
        while not job.done():
            if shown is None and any(str(o[0]).startswith("frame ") for o in job.outputs()):
                shown = time.perf_counter() - started
            time.sleep(0.01)
        status = job.outputs()[-1][0]
        assert status.startswith("done"), status
        studio_seconds = time.perf_counter() - started
        started = time.perf_counter()
        runner.render(make_job({**settings, "command": "zoom", "output": str(work / f"runner-{k}.mp4")}),
                      progress=False, model=model)
        runner_seconds = time.perf_counter() - started
        if k:
            studio_times.append(studio_seconds / args.frames)
            runner_times.append(runner_seconds / args.frames)
            first_shown.append(shown)
    app.close()
    s, r = statistics.median(studio_times), statistics.median(runner_times)
    print(f"{args.size}, {args.frames} frames, {args.repeats} pairs: studio {s:.3f} s/frame "
          f"({min(studio_times):.3f}-{max(studio_times):.3f}), runner {r:.3f} s/frame "
          f"({min(runner_times):.3f}-{max(runner_times):.3f})")
    print(f"Render to first frame shown: {statistics.median(first_shown):.2f} s")
    print(f"ratio={s / r:.3f}")


if __name__ == "__main__":
    main()
