"""Small looping GIFs and animated WebP, measured: file size and PSNR against the source frames.

Encodes a clip (any video ffmpeg reads, or a folder of numbered PNG frames, such as a render's --frames-dir)
with each GIF filter graph below and as animated WebP at a few qualities, then decodes every output and
compares it frame by frame with the source. Prints one row per encoding: size in KB, KB a frame, the mean
PSNR in dB (higher is closer), and the flicker: the RMS error of the change from one frame to the next, which
the source does not have (a dither pattern that moves every frame; lower is steadier). The first GIF row is what zoomdream wrote before (one palette for the whole
clip, error-diffusion dithering); `writer:` rows are what the writers in WRITERS write today.

    python scripts/bench_gif.py loop.mp4          # or: python scripts/bench_gif.py FRAMES_DIR --fps 24
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # this checkout's zoomdream, not an installed copy

# (name, filter graph after the input): ffmpeg's own tools for small GIFs.
GIF_GRAPHS = {
    "before: one palette, sierra2_4a": "split[a][b];[a]palettegen=stats_mode=diff[p];"
                                       "[b][p]paletteuse=dither=sierra2_4a",
    "one palette, rectangles, sierra2_4a": "split[a][b];[a]palettegen=stats_mode=diff[p];"
                                           "[b][p]paletteuse=dither=sierra2_4a:diff_mode=rectangle",
    "one palette, rectangles, bayer 3": "split[a][b];[a]palettegen=stats_mode=diff[p];"
                                        "[b][p]paletteuse=dither=bayer:bayer_scale=3:diff_mode=rectangle",
    "palette a frame, sierra2_4a": "split[a][b];[a]palettegen=stats_mode=single[p];"
                                   "[b][p]paletteuse=new=1:dither=sierra2_4a",
    "palette a frame, bayer 2": "split[a][b];[a]palettegen=stats_mode=single[p];"
                                "[b][p]paletteuse=new=1:dither=bayer:bayer_scale=2",
    "palette a frame, bayer 3": "split[a][b];[a]palettegen=stats_mode=single[p];"
                                "[b][p]paletteuse=new=1:dither=bayer:bayer_scale=3",
    "palette a frame, bayer 4": "split[a][b];[a]palettegen=stats_mode=single[p];"
                                "[b][p]paletteuse=new=1:dither=bayer:bayer_scale=4",
    "palette a frame, no dither": "split[a][b];[a]palettegen=stats_mode=single[p];"
                                  "[b][p]paletteuse=new=1:dither=none",
    "palette a frame, 128 colours, no dither": "split[a][b];[a]palettegen=stats_mode=single:max_colors=128[p];"
                                               "[b][p]paletteuse=new=1:dither=none",
    "palette a frame, 64 colours, bayer 4": "split[a][b];[a]palettegen=stats_mode=single:max_colors=64[p];"
                                            "[b][p]paletteuse=new=1:dither=bayer:bayer_scale=4",
}
WEBP_QUALITIES = (60, 75, 90)


def source_frames(source: Path, fps: float) -> tuple[list[np.ndarray], float]:
    from zoomdream import media

    if source.is_dir():
        return [media.read_image(p) for p in media.list_frames(source)], fps
    return list(media.read_video(source)), media.probe_video(source).fps


def psnr(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    if len(a) != len(b):
        raise SystemExit(f"{len(b)} frames decoded for {len(a)} source frames")
    errors = [np.mean((x.astype(np.float64) - y[..., :3].astype(np.float64)) ** 2) for x, y in zip(a, b)]
    return float(np.mean([10 * np.log10(255 ** 2 / max(e, 1e-12)) for e in errors]))


def flicker(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    change = np.diff(np.array(b, np.float64), axis=0) - np.diff(np.array(a, np.float64), axis=0)
    return float(np.sqrt(np.mean(change ** 2)))


def decoded(path: Path, size: tuple[int, int]) -> list[np.ndarray]:
    """Every frame the file holds, as stored (GIF delays are whole centiseconds: read at a rate, a 24 fps GIF
    would gain frames)."""
    from zoomdream.media.ffmpeg import ffmpeg_exe

    w, h = size
    raw = subprocess.run([ffmpeg_exe(), "-v", "error", "-i", str(path), "-fps_mode", "passthrough", "-f", "rawvideo",
                          "-pix_fmt", "rgb24", "pipe:1"], capture_output=True, check=True).stdout
    return list(np.frombuffer(raw, np.uint8).reshape(-1, h, w, 3))


def ffmpeg_gif(frames: list[np.ndarray], fps: float, graph: str, out: Path) -> None:
    from zoomdream.media.ffmpeg import ffmpeg_exe, fps_fraction, rate_arg

    h, w = frames[0].shape[:2]
    cmd = [ffmpeg_exe(), "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}",
           "-framerate", rate_arg(fps_fraction(fps)), "-i", "pipe:0", "-vf", graph, "-loop", "0", str(out)]
    subprocess.run(cmd, input=b"".join(f.tobytes() for f in frames), check=True)


def zoomdream_file(frames: list[np.ndarray], fps: float, out: Path) -> None:
    from zoomdream import media

    with media.VideoWriter(out, fps) as writer:
        for frame in frames:
            writer.write(frame)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="a video, or a folder of frame_NNNNNNNN.png")
    parser.add_argument("--fps", type=float, default=24.0, help="rate of a folder of frames (default: 24)")
    args = parser.parse_args()
    frames, fps = source_frames(args.source, args.fps)
    h, w = frames[0].shape[:2]
    print(f"source: {args.source}, {len(frames)} frames of {w}x{h} at {fps:g} fps")
    print(f"{'encoding':44s} {'KB':>8s} {'KB/frame':>9s} {'PSNR dB':>8s} {'flicker':>8s}")
    with tempfile.TemporaryDirectory() as tmp:
        rows = [(name, Path(tmp) / f"{i}.gif", lambda out, g=graph: ffmpeg_gif(frames, fps, g, out))
                for i, (name, graph) in enumerate(GIF_GRAPHS.items())]
        rows.append(("writer: .gif", Path(tmp) / "zd.gif", lambda out: zoomdream_file(frames, fps, out)))
        rows.append(("writer: .webp", Path(tmp) / "zd.webp", lambda out: zoomdream_file(frames, fps, out)))
        for quality in WEBP_QUALITIES:
            rows.append((f"webp quality {quality}", Path(tmp) / f"q{quality}.webp",
                         lambda out, q=quality: webp(frames, fps, q, out)))
        for name, out, make in rows:
            make(out)
            size = os.path.getsize(out) / 1024
            got = decoded(out, (w, h))
            print(f"{name:44s} {size:8.0f} {size / len(frames):9.1f} {psnr(frames, got):8.2f} "
                  f"{flicker(frames, got):8.2f}", flush=True)


def webp(frames: list[np.ndarray], fps: float, quality: int, out: Path) -> None:
    from zoomdream.media.ffmpeg import ffmpeg_exe, fps_fraction, rate_arg

    h, w = frames[0].shape[:2]
    cmd = [ffmpeg_exe(), "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}",
           "-framerate", rate_arg(fps_fraction(fps)), "-i", "pipe:0", "-c:v", "libwebp_anim", "-quality",
           str(quality), "-loop", "0", str(out)]
    subprocess.run(cmd, input=b"".join(f.tobytes() for f in frames), check=True)


if __name__ == "__main__":
    main()
