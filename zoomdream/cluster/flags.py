"""The cluster flags of the command line. They change where frames are made, never the frames, so they are
not render settings and live apart from the Job schema; this module imports nothing else, so the CLI's answers
(a usage error, --help) never pay for the cluster's driver or Ray."""
from __future__ import annotations

import argparse

EXTRA = "pip install 'zoomdream[cluster]'"
WARMUP = 8  # frames a chunk starts before its range, so the flow coherence carries across the seam
NAMES = ("cluster", "workers", "chunks", "warmup")


def add_flags(parser, chunks: bool) -> None:
    """The cluster flags of `render`, `zoom` and (with ``chunks``) `video`."""
    group = parser.add_argument_group(f"cluster (needs Ray: {EXTRA})")
    group.add_argument("--cluster", nargs="?", const="", default=None, metavar="ADDRESS",
                       help="render on a Ray cluster: the ADDRESS of a running one (or $RAY_ADDRESS), else a local "
                            "cluster sized to this machine; every path must be on a folder all machines share")
    group.add_argument("--workers", type=int, default=None, metavar="N",
                       help="Ray workers, each loading the model once (default: one per GPU, else one per job or "
                            "chunk up to one per CPU, the CPUs shared out among them as threads)")
    if chunks:
        group.add_argument("--chunks", type=int, default=None, metavar="N",
                           help="split the clip into N frame ranges rendered in parallel and joined with the "
                                "audio (default with --cluster: one per worker); implies --cluster")
        group.add_argument("--warmup", type=int, default=None, metavar="W",
                           help=f"frames each chunk starts early, cross-faded with the end of the chunk before, "
                                f"so its seam dissolves instead of cutting (default: {WARMUP})")
    else:  # asked for anyway: refused with the reason (see driver.main)
        group.add_argument("--chunks", type=int, default=None, help=argparse.SUPPRESS)


def requested(args) -> bool:
    """Whether the command line asks for a cluster (any of its flags given)."""
    return any(getattr(args, name, None) is not None for name in NAMES)
