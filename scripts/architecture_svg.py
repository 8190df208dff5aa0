"""Draw docs/images/architecture.svg, the Architecture page's picture of the house: who owns what, the data flow
CLI -> config -> runner -> loops -> engine -> model, what the runner and the loops hand work to, and who
writes each file of a work folder. Plain SVG text, no plotting library: run it again after a move.

    python scripts/architecture_svg.py [--output docs/images/architecture.svg]
"""
from __future__ import annotations

import argparse
from html import escape
from pathlib import Path

WIDTH, HEIGHT = 1040, 810
FLOW = ("#e8eefc", "#3f51b5")  # fill, stroke: the data flow
HELPER = ("#f4f4f4", "#888")  # what the flow hands work to
FOLDER = ("#fff8e1", "#c9a227")  # the work folder

ENTRIES = [  # (title, what), side by side at the top
    ("cli · arguments", "flags, --check, one-line errors"),
    ("studio/", "the web page and its session"),
    ("cluster/", "Ray driver, pool, workers"),
    ("live/", "clock, outputs, controls, OSC"),
]
COLUMN = [  # (title, what), top to bottom: each imports and calls the one below
    ("config", "Job: the one schema of settings; COMMANDS: the command table"),
    ("runner/", "check, lock, load the model once (models.ModelCache), drive frames into sinks"),
    ("loops/", "frame sources: still, zoom, video, interpolate, live; resolve(job) -> settings"),
    ("engine · objective · ascent", "the Dreamer: what to maximise, tiles, steps, octaves, guide"),
    ("backend · models", "the compiled gradient step (TensorFlow or JAX); backbones, weights"),
]
SIDE = [  # (title, what, the column row whose arrow points at it)
    ("sinks", "encoder, frames folder, preview, image, memory", 1),
    ("store/", "lock, frames, segments, pieces: what --resume keeps", 1),
    ("frames/", "warp, colour, levels: CPU and device twins", 2),
    ("schedules/ · audio/ · curves", "keyframes and expressions of t, music features", 2),
    ("flow · interpolation", "optical flow, frames between frames", 2),
    ("media/", "every file in and out: images, ffmpeg, atomic writes", None),
]
WORK = [  # (path, owner and what)
    ("OUT", "media.writer through sinks.EncoderSink: a hidden temp, renamed when whole"),
    ("OUT.job.toml", "runner: the resolved settings of the finished render"),
    ("OUT.preview.png", "sinks.PreviewSink (--preview)"),
    ("OUT.zoomdream/.zoomdream.lock", "store.lock: an OS lock; only its holder writes in the folder"),
    ("OUT.zoomdream/job.toml", "runner: how to resume"),
    ("OUT.zoomdream/state.json, first.png, frames/", "store.FrameStore: frames counted as kept, frame 0"),
    ("OUT.zoomdream/segments/, last-N.png, open/", "store.SegmentStore: H.264 segments, the last kept frame"),
    ("OUT.zoomdream/chunk-A-B-warmupW/", "cluster.driver names it; store.PieceStore, runner.pieces (streams)"),
    ("OUT.zoomdream/keys/, stream-A-B.mp4", "runner.keyed: a cluster zoom's dreamed keys, frames between"),
]


def box(x: float, y: float, w: float, h: float, title: str, what: str, colours: tuple[str, str]) -> list[str]:
    fill, stroke = colours
    return [f'<rect x="{x}" y="{y}" width="{w}" height="{h}" rx="8" fill="{fill}" stroke="{stroke}"/>',
            f'<text x="{x + 12}" y="{y + 23}" font-weight="bold">{escape(title)}</text>',
            f'<text x="{x + 12}" y="{y + 42}" font-size="12" fill="#333">{escape(what)}</text>']


def arrow(x1: float, y1: float, x2: float, y2: float, colour: str = "#555", width: float = 2) -> str:
    return (f'<line x1="{x1}" y1="{y1}" x2="{x2}" y2="{y2}" stroke="{colour}" stroke-width="{width}" '
            f'marker-end="url(#a)"/>')


def draw() -> str:
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" '
           f'height="{HEIGHT}" font-family="sans-serif" font-size="14">',
           '<defs><marker id="a" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="8" markerHeight="8" '
           'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#555"/></marker></defs>',
           f'<rect width="{WIDTH}" height="{HEIGHT}" fill="#fff"/>']
    h, gap, left, column_w = 56, 30, 30, 540
    centre = left + column_w / 2
    entry_w = (column_w - 2 * 14) / 3
    first = 20 + h + gap
    for i, (title, what) in enumerate(ENTRIES):
        x = left + i * (entry_w + 14)
        out += box(x, 20, entry_w, h, title, what, FLOW)
        out.append(arrow(x + entry_w / 2, 20 + h, centre + (i - 1) * 60, first - 2))
    rows = []
    for i, (title, what) in enumerate(COLUMN):
        y = first + i * (h + gap)
        rows.append(y)
        out += box(left, y, column_w, h, title, what, FLOW)
        if i:
            out.append(arrow(centre, y - gap, centre, y - 2))
    side_x, side_w, side_h, side_gap = 640, 370, 50, 12
    for i, (title, what, row) in enumerate(SIDE):
        y = first + 40 + i * (side_h + side_gap)
        out += box(side_x, y, side_w, side_h, title, what, HELPER)
        if row is not None:
            out.append(arrow(left + column_w, rows[row] + h / 2, side_x - 2, y + side_h / 2, "#888", 1.5))
    bottom = rows[-1] + h
    out.append(f'<text x="{left}" y="{bottom + 24}" font-size="12" fill="#555">Arrows point from a module to '
               f'what it imports and calls: data flows down and out, never back (tests/test_architecture.py '
               f'checks there is no import circle).</text>')
    top = bottom + 44
    line = 22
    fill, stroke = FOLDER
    out += [f'<rect x="{left}" y="{top}" width="{WIDTH - 2 * left}" height="{40 + line * len(WORK)}" rx="8" '
            f'fill="{fill}" stroke="{stroke}"/>',
            f'<text x="{left + 12}" y="{top + 24}" font-weight="bold">Beside an output OUT, and in its work '
            f'folder OUT.zoomdream/: who writes each file</text>']
    for i, (path, owner) in enumerate(WORK):
        y = top + 50 + i * line
        out += [f'<text x="{left + 12}" y="{y}" font-family="monospace" font-size="12">{escape(path)}</text>',
                f'<text x="{left + 400}" y="{y}" font-size="12" fill="#333">{escape(owner)}</text>']
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default=str(Path(__file__).parents[1] / "docs" / "images" / "architecture.svg"))
    Path(parser.parse_args().output).write_text(draw())


if __name__ == "__main__":
    main()
