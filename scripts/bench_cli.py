"""How soon the command line answers: seconds to a usage error and to the `models` listing, against a bare
Python start, each run as a fresh process the way a user types it, rounds alternating so load spreads evenly.

    python scripts/bench_cli.py [--repeats 7]

Prints the median seconds of `python -c pass`, of `zoomdream image samples/chelsea.png` (no -o: the error a
user meets first), of `zoomdream zoom --help` and of `zoomdream models`, and the load; the last line is
``ratio=`` (usage-error time over the bare start; the target is 5 or less).
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent  # this checkout, not an installed copy
CLI = [sys.executable, "-m", "zoomdream.cli"]
RUNS = {
    "bare python": ([sys.executable, "-c", "pass"], 0),
    "usage error": ([*CLI, "image", str(ROOT / "samples" / "chelsea.png")], 2),
    "zoom --help": ([*CLI, "zoom", "--help"], 0),
    "models": ([*CLI, "models"], 0),
}


def seconds(command: list[str], code: int) -> float:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    start = time.perf_counter()
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if result.returncode != code:
        sys.exit(f"{' '.join(command)} exited {result.returncode}, not {code}: {result.stderr.strip()}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    times = {name: [] for name in RUNS}
    for _ in range(args.repeats):
        for name, (command, code) in RUNS.items():
            times[name].append(seconds(command, code))
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}; {os.cpu_count()} cores; "
          f"median of {args.repeats}")
    median = {name: statistics.median(t) for name, t in times.items()}
    for name, value in median.items():
        print(f"{name:12s} {value:.3f} s  (min {min(times[name]):.3f})")
    print(f"ratio={median['usage error'] / median['bare python']:.2f}")


if __name__ == "__main__":
    main()
