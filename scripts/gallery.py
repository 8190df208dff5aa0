"""Remake the documentation's gallery: docs/gallery.md and its pictures in docs/images/gallery/.

Every picture comes from the exact `zoomdream` command printed above it on the page: each command runs here
through the CLI (in this process, in a scratch folder that links the repository's samples/ and tests/), and the
pictures are cut from its outputs at small sizes (JPEG strips, one GIF), so the gallery stays a few hundred KB
and a few minutes of CPU. Run it after a change that alters how dreams look:

    python scripts/gallery.py [--out docs]      # then look at docs/images/gallery/*.jpg
"""
from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

LAYERS = ("block3", "block5", "block7", "block9", "block11", "block13")
STILLS = [f"zoomdream image samples/chelsea.png -o {layer}.png --max-size 160 --layers {layer}" for layer in LAYERS]
STILLS.append("zoomdream image samples/chelsea.png -o guided.png --max-size 160 --guide samples/coffee.png")
ZOOM = "zoomdream zoom samples/chelsea.png -o zoom.mp4 --max-size 192 --frames 36 --frames-dir zoom-frames"
ZOOM_SHOWN = (0, 12, 24, 35)
LOOP = "zoomdream zoom --noise --size 128x128 --frames 48 --loop --angle 1 --interpolate 2 -o loop.gif --gif-fps 12 --seed 3"
TRACK = "python scripts/bench_audio.py --seconds 24 --write-track beat.wav"
MUSIC_FLAGS = ("--noise --size 192x112 --fps 12 --audio beat.wav --audio-start 13 --audio-duration 6 "
               "--zoom '1.002 + 0.05*smooth(onset, 0.25)' --angle '2*smooth(beat, 0.3)' "
               "--step-size '0.01 + 0.03*smooth(bass, 0.1, 0.4)'")
MUSIC = f"zoomdream zoom {MUSIC_FLAGS} -o music.mp4 --frames-dir music-frames"
MUSIC_CURVES = f"zoomdream curves zoom {MUSIC_FLAGS} -o music-curves.png --export-schedules music.csv"
CLIP = "tests/data/big_buck_bunny_432_433.webm"
IMAGES = "images/gallery"  # where the page finds its pictures
VIDEO = f"zoomdream video {CLIP} -o dreamy.mp4 --max-size 192 --step-size 0.03 --frames-dir dreamy-frames"


def run(command: str) -> None:
    """One documented command, exactly as the page prints it."""
    started = time.perf_counter()
    argv = shlex.split(command)
    if argv[0] == "python":
        subprocess.run([sys.executable, *argv[1:]], check=True, cwd=os.getcwd(),
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    else:
        from zoomdream.cli import main

        code = main(argv[1:])
        if code:
            raise SystemExit(f"gallery: '{command}' exited {code}")
    print(f"{time.perf_counter() - started:6.1f} s  {command}", file=sys.stderr)


def read(path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert image is not None, path
    return image


def label(image: np.ndarray, text: str) -> np.ndarray:
    """A caption in the corner, dark on light so it reads on any dream."""
    out = image.copy()
    (w, h), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.4, 1)
    cv2.rectangle(out, (0, 0), (w + 6, h + base + 4), (255, 255, 255), -1)
    cv2.putText(out, text, (3, h + 2), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    return out


def strip(images: list[np.ndarray], gap: int = 4) -> np.ndarray:
    height = max(i.shape[0] for i in images)
    parts = []
    for image in images:
        pad = np.full((height, image.shape[1], 3), 255, np.uint8)
        pad[: image.shape[0]] = image
        parts += [pad, np.full((height, gap, 3), 255, np.uint8)]
    return np.concatenate(parts[:-1], axis=1)


def grid(images: list[np.ndarray], columns: int, gap: int = 4) -> np.ndarray:
    rows = [strip(images[i:i + columns], gap) for i in range(0, len(images), columns)]
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, gap), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    return np.concatenate(rows)[:-gap]


def save_jpeg(path: Path, image: np.ndarray, quality: int = 82) -> str:
    cv2.imwrite(str(path), image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    return path.name


def frames_at(folder: str) -> list[Path]:
    return sorted(Path(folder).glob("frame_*.png"))


def video_frames(path: str, count: int, size: tuple[int, int]) -> list[np.ndarray]:
    """The first ``count`` frames of a clip, resized as the dream was (what --max-size does)."""
    capture, frames = cv2.VideoCapture(path), []
    while len(frames) < count:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(cv2.resize(frame, size, interpolation=cv2.INTER_AREA))
    capture.release()
    return frames


def write_gif(path: Path, frames: list[np.ndarray], fps: float) -> str:
    import imageio.v3 as iio

    rgb = [cv2.cvtColor(f, cv2.COLOR_BGR2RGB) for f in frames]
    iio.imwrite(path, rgb, extension=".gif", duration=1000 / fps, loop=0)
    return path.name


def wrapped(command: str, width: int = 100) -> str:
    """A long command over several lines, each broken before an option once past 60 characters, as a shell
    reads it (`\\` at line ends)."""
    if len(command) <= width:
        return command
    lines, words = [""], shlex.split(command)
    for i, word in enumerate(words):
        if word.startswith("-") and words[i - 1] != "-o" and len(lines[-1]) > 60:
            lines.append(" ")
        lines[-1] += " " * bool(lines[-1]) + shlex.quote(word)
    return " \\\n".join(lines)


def block(*commands: str) -> str:
    return "```bash\n" + "\n".join(map(wrapped, commands)) + "\n```\n"


def make(out: Path) -> str:
    """Run every command in the current folder; write the pictures into ``out``; return the page's text."""
    page = ["# Gallery", "",
            "Every picture here was made by the command above it, run by `scripts/gallery.py` at small sizes "
            "(the pictures are cut from the outputs into strips). Run the same commands without `--max-size` or "
            "with a larger `--size` for full-size work. The sample photos and clips are in the repository "
            "(`samples/`, `tests/data/`).", ""]

    page += ["## Stills per layer", "",
             "Shallow blocks of EfficientNet-Lite0 give swirls and stripes, middle ones ripples and eyes, deep "
             "ones (the default `block10:1,block12:1`) animal faces; `--guide` dreams toward another image's "
             "features (here the coffee cup). More in [image](image.md#what-to-dream-layers-and-objectives).", "",
             block(*STILLS)]
    for command in STILLS:
        run(command)
    names = [*LAYERS, "guided"]
    size = (read("block3.png").shape[1], read("block3.png").shape[0])
    sheet = [label(cv2.resize(read("samples/chelsea.png"), size, interpolation=cv2.INTER_AREA), "input")]
    sheet += [label(read(f"{name}.png"), name if name != "guided" else "guided by coffee") for name in names]
    picture = save_jpeg(out / "stills.jpg", grid(sheet, 4))
    page += [f"![the input and its dreams on each layer]({IMAGES}/{picture})", ""]

    run(ZOOM)
    frames = frames_at("zoom-frames")
    shown = [label(read(frames[i]), f"frame {i}") for i in ZOOM_SHOWN]
    picture = save_jpeg(out / "zoom-strip.jpg", strip(shown))
    page += ["## A zoom", "", "Frame 0 is a full still-image dream; each later frame is the one before, zoomed "
             "in by 2% and dreamed again with 2 octaves of 5 steps ([zoom](zoom.md)).", "", block(ZOOM),
             f"![frames {', '.join(map(str, ZOOM_SHOWN))} of the zoom]({IMAGES}/{picture})", ""]

    run(LOOP)
    shutil.copyfile("loop.gif", out / "loop.gif")
    page += ["## A seamless loop", "", "The last frame flows into the first, so the GIF plays forever without a "
             "seam; `--interpolate 2` dreams every other frame ([Loops and interpolation](loops.md)).", "",
             block(LOOP), f"![a 48-frame loop]({IMAGES}/loop.gif)", ""]

    run(TRACK)
    run(MUSIC_CURVES)
    run(MUSIC)
    import csv

    with open("music.csv") as f:
        rows = list(csv.DictReader(f))
    beats = [int(float(r["frame"])) for r in rows if float(r["beat"]) > 0.999]
    picked = beats[:: max(1, len(beats) // 6)][:6]
    frames = frames_at("music-frames")
    shown = [label(read(frames[i]), f"beat at {float(rows[i]['seconds']):.2f} s") for i in picked]
    beat_strip = save_jpeg(out / "music-beats.jpg", grid(shown, 3))
    curves = read("music-curves.png")
    curves = cv2.resize(curves, (900, round(curves.shape[0] * 900 / curves.shape[1])), interpolation=cv2.INTER_AREA)
    curve_picture = save_jpeg(out / "music-curves.jpg", curves, 80)
    page += ["## A zoom that follows the music", "",
             "Six seconds of a synthetic 128 BPM track whose drums come in after two seconds: each onset pushes "
             "the zoom, each beat turns the picture, the bass raises the dream's strength ([Music](music.md)). "
             "`zoomdream curves` draws every schedule and feature before anything is dreamed; below it, frames "
             "of the render on beats the tracker found.", "",
             block(TRACK, MUSIC_CURVES, MUSIC),
             f"![every schedule and feature of the music zoom]({IMAGES}/{curve_picture})", "",
             f"![frames of the music zoom on its beats]({IMAGES}/{beat_strip})", ""]

    run(VIDEO)
    dreamed = [read(p) for p in frames_at("dreamy-frames")]
    h, w = dreamed[0].shape[:2]
    source = video_frames(CLIP, len(dreamed), (w, h))
    pairs = [strip([label(s, "source"), label(d, "zoomdream video")]) for s, d in zip(source, dreamed)]
    clip = write_gif(out / "video-side-by-side.gif", pairs[::2], 12)
    page += ["## A stylized clip beside its source", "",
             "Each frame starts from the previous dreamed frame carried along the source's optical flow, so the "
             "dream sticks to what moves instead of flickering ([video](video.md)). One second of *Big Buck "
             "Bunny* (CC BY 3.0, Blender Foundation), every other frame, source left:", "", block(VIDEO),
             f"![the source clip and the dreamed clip side by side]({IMAGES}/{clip})", ""]
    return "\n".join(page)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "docs"), help="the docs folder (default: docs/)")
    docs = Path(parser.parse_args().out).resolve()
    out = docs / "images" / "gallery"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    with tempfile.TemporaryDirectory(prefix="zoomdream-gallery-") as scratch:
        for name in ("samples", "tests", "scripts"):
            os.symlink(ROOT / name, Path(scratch) / name)
        cwd = os.getcwd()
        os.chdir(scratch)
        try:
            page = make(out)
        finally:
            os.chdir(cwd)
    (docs / "gallery.md").write_text(page)
    total = sum(p.stat().st_size for p in out.iterdir())
    print(f"wrote {docs / 'gallery.md'} and {len(list(out.iterdir()))} pictures, {total / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
