"""Tests for zoomdream.media: real files written and read back through OpenCV, imageio and the bundled ffmpeg."""

from __future__ import annotations

import os
import subprocess
from fractions import Fraction
from pathlib import Path

import cv2
import imageio.v3 as iio
import imageio_ffmpeg
import numpy as np
import pytest
from PIL import Image

from zoomdream import media as zio
from zoomdream.media import ffmpeg as zffmpeg
from zoomdream.media import files, images, writer
from zoomdream.errors import ZoomdreamError

DATA = Path(__file__).parent / "data"
WEBM = DATA / "big_buck_bunny_432_433.webm"  # 1 s, 1280x720, VP8 24 fps, Vorbis audio
MP4 = DATA / "example.mp4"  # 2 s, 640x480, H.264 25 fps, no audio


# ---------------------------------------------------------------------------------------------- helpers


def ffmpeg(*args: str) -> None:
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", *args]
    subprocess.run(cmd, check=True)


def meta(path: Path) -> dict:
    """Header as parsed by imageio-ffmpeg, independently of zoomdream's own parser."""
    gen = imageio_ffmpeg.read_frames(str(path))
    try:
        return next(gen)
    finally:
        gen.close()


def count_frames(path: Path) -> int:
    return imageio_ffmpeg.count_frames_and_secs(str(path))[0]


def assert_one_line_naming(err: pytest.ExceptionInfo, path: Path) -> None:
    msg = str(err.value)
    assert "\n" not in msg
    assert path.name in msg


def gradient_frames(n: int, w: int, h: int) -> list[np.ndarray]:
    """Distinct frames, so no encoder can merge duplicates."""
    frames = []
    for i in range(n):
        f = np.zeros((h, w, 3), np.uint8)
        f[..., 0] = (i * 23) % 256
        f[..., 1] = np.linspace(0, 255, w, dtype=np.uint8)[None, :]
        f[..., 2] = np.linspace(0, 255, h, dtype=np.uint8)[:, None]
        frames.append(f)
    return frames


def write_video(path: Path, frames, fps: float = 24, **options) -> None:
    with zio.VideoWriter(path, fps, **options) as w:
        for f in frames:
            w.write(f)


# ---------------------------------------------------------------------------------------------- read_image


def test_read_png_rgb_is_exact(tmp_path):
    img = np.random.default_rng(0).integers(0, 256, (7, 9, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "a.png"), img[:, :, ::-1])
    out = zio.read_image(tmp_path / "a.png")
    assert out.dtype == np.uint8 and out.shape == (7, 9, 3)
    np.testing.assert_array_equal(out, img)


def test_read_grayscale_png_gives_three_equal_channels(tmp_path):
    gray = np.arange(20, dtype=np.uint8).reshape(4, 5) * 10
    cv2.imwrite(str(tmp_path / "g.png"), gray)
    out = zio.read_image(tmp_path / "g.png")
    assert out.shape == (4, 5, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], gray)


def test_read_rgba_png_composites_over_white(tmp_path):
    rgba = np.zeros((1, 3, 4), np.uint8)
    rgba[0, 0] = (10, 20, 30, 255)  # opaque: colour kept
    rgba[0, 1] = (10, 20, 30, 0)  # transparent: white
    rgba[0, 2] = (0, 0, 0, 128)  # half: mid grey
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    out = zio.read_image(tmp_path / "a.png")
    assert out.shape == (1, 3, 3)
    assert out[0, 0].tolist() == [10, 20, 30]
    assert out[0, 1].tolist() == [255, 255, 255]
    assert all(abs(int(v) - 127) <= 1 for v in out[0, 2])


def test_read_gray_alpha_png(tmp_path):
    la = np.array([[[50, 255], [50, 0]]], np.uint8)
    Image.fromarray(la, "LA").save(tmp_path / "la.png")
    out = zio.read_image(tmp_path / "la.png")
    assert out.tolist() == [[[50, 50, 50], [255, 255, 255]]]


def test_read_16bit_png_scales_to_8bit(tmp_path):
    img16 = np.array([[[0, 32896, 65535], [257, 514, 771]]], np.uint16)  # 32896 = 128 * 257
    cv2.imwrite(str(tmp_path / "d.png"), img16[:, :, ::-1])
    out = zio.read_image(tmp_path / "d.png")
    assert out.dtype == np.uint8
    assert out.tolist() == [[[0, 128, 255], [1, 2, 3]]]


def test_read_jpeg(tmp_path):
    img = np.full((16, 24, 3), (200, 100, 50), np.uint8)
    cv2.imwrite(str(tmp_path / "a.jpg"), img[:, :, ::-1])
    out = zio.read_image(tmp_path / "a.jpg")
    assert out.shape == (16, 24, 3)
    assert np.abs(out.astype(int) - img).max() <= 4


def test_read_jpeg_applies_exif_orientation(tmp_path):
    img = np.zeros((10, 20, 3), np.uint8)
    im = Image.fromarray(img)
    exif = im.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    im.save(tmp_path / "r.jpg", exif=exif)
    assert zio.read_image(tmp_path / "r.jpg").shape == (20, 10, 3)


def test_read_gif_gives_first_frame(tmp_path):
    frames = np.stack([np.full((6, 8, 3), c, np.uint8) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))])
    iio.imwrite(tmp_path / "a.gif", frames, duration=100, loop=0)
    out = zio.read_image(tmp_path / "a.gif")
    assert out.shape == (6, 8, 3)
    assert out[0, 0].tolist() == [255, 0, 0]


@pytest.mark.parametrize("ext, lossless", [(".png", True), (".bmp", True), (".tif", True), (".tiff", True),
                                           (".webp", False), (".jpeg", False)])
def test_write_read_round_trip_per_format(tmp_path, ext, lossless):
    img = gradient_frames(1, 32, 24)[0]
    path = tmp_path / f"a{ext}"
    zio.write_image(path, img)
    out = zio.read_image(path)
    assert out.shape == img.shape
    if lossless:
        np.testing.assert_array_equal(out, img)
    else:
        assert np.abs(out.astype(int) - img).mean() < 4


@pytest.mark.parametrize("name,make,pattern", [
    ("nope.png", lambda p: None, "not found"),
    ("notes.png", lambda p: p.write_text("this is not an image\n"), "not a readable image"),
    ("folder.png", lambda p: p.mkdir(), "folder"),
    ("empty.jpg", lambda p: p.touch(), "empty"),
])
def test_unreadable_inputs_are_one_line_errors(tmp_path, name, make, pattern):
    path = tmp_path / name
    make(path)
    with pytest.raises(ZoomdreamError, match=pattern) as err:
        zio.read_image(path)
    assert_one_line_naming(err, path)


# ---------------------------------------------------------------------------------------------- write_image


def test_write_image_round_trip_leaves_no_temp(tmp_path):
    img = np.random.default_rng(1).integers(0, 256, (5, 6, 3), dtype=np.uint8)
    zio.write_image(tmp_path / "out.png", img)
    assert os.listdir(tmp_path) == ["out.png"]
    np.testing.assert_array_equal(zio.read_image(tmp_path / "out.png"), img)


def test_write_image_failure_keeps_old_file_and_no_temp(tmp_path, monkeypatch):
    target = tmp_path / "out.png"
    target.write_bytes(b"old")

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(files.os, "replace", broken_replace)
    with pytest.raises(ZoomdreamError, match="No space left") as err:
        zio.write_image(target, np.zeros((2, 2, 3), np.uint8))
    assert_one_line_naming(err, target)
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["out.png"]


def test_write_image_unknown_extension(tmp_path):
    path = tmp_path / "out.xyz"
    with pytest.raises(ZoomdreamError, match=r"\.png .*\.jpg") as err:
        zio.write_image(path, np.zeros((2, 2, 3), np.uint8))
    assert_one_line_naming(err, path)
    assert not path.exists()


def test_write_image_makes_a_missing_folder_but_not_under_a_file(tmp_path):
    path = tmp_path / "no" / "such" / "out.png"
    zio.write_image(path, np.zeros((2, 2, 3), np.uint8))
    assert path.is_file()
    (tmp_path / "file").write_bytes(b"x")
    path = tmp_path / "file" / "sub" / "out.png"
    with pytest.raises(ZoomdreamError, match="is a file, not a folder") as err:
        zio.write_image(path, np.zeros((2, 2, 3), np.uint8))
    assert_one_line_naming(err, path)


def test_write_image_rejects_non_uint8_and_wrong_shape(tmp_path):
    with pytest.raises(TypeError):
        zio.write_image(tmp_path / "a.png", np.zeros((2, 2, 3), np.float32))
    with pytest.raises(ValueError):
        zio.write_image(tmp_path / "a.png", np.zeros((2, 2), np.uint8))
    assert os.listdir(tmp_path) == []


# ---------------------------------------------------------------------------------------------- VideoWriter


@pytest.mark.parametrize("w, h, even", [(66, 50, (66, 50)), (65, 49, (64, 48))])
def test_mp4_writer_frames_codec_and_even_size(tmp_path, w, h, even):
    out = tmp_path / "out.mp4"
    write_video(out, gradient_frames(12, w, h), fps=24)
    assert os.listdir(tmp_path) == ["out.mp4"]
    m = meta(out)
    assert m["codec"].startswith("h264")
    assert m["pix_fmt"].startswith("yuv420p")
    assert tuple(m["size"]) == even
    assert m["fps"] == 24
    assert "audio_codec" not in m
    assert count_frames(out) == 12
    data = out.read_bytes()
    assert data.find(b"moov") < data.find(b"mdat")  # +faststart: playable while downloading


def test_mp4_writer_keeps_ntsc_rate(tmp_path):
    out = tmp_path / "ntsc.mp4"
    write_video(out, gradient_frames(6, 32, 32), fps=29.97)
    assert abs(zio.probe_video(out).fps - 30000 / 1001) < 0.01
    assert abs(meta(out)["fps"] - 29.97) < 0.01
    assert count_frames(out) == 6


@pytest.mark.parametrize("ext", [".mov", ".mkv"])
def test_other_containers(tmp_path, ext):
    out = tmp_path / f"out{ext}"
    write_video(out, gradient_frames(5, 32, 24), fps=25)
    assert meta(out)["codec"].startswith("h264")
    assert count_frames(out) == 5


def test_mp4_colours_survive(tmp_path):
    out = tmp_path / "c.mp4"
    colours = [(200, 50, 30), (20, 180, 90), (40, 60, 220)]
    write_video(out, [np.full((48, 64, 3), c, np.uint8) for c in colours for _ in range(4)], fps=24)
    got = [f.reshape(-1, 3).mean(axis=0) for f in zio.read_video(out)]
    assert len(got) == 12
    for i, c in enumerate(colours):
        assert np.abs(got[i * 4 + 2] - c).max() < 4


def test_audio_from_webm_is_reencoded_to_aac_in_mp4(tmp_path):
    out = tmp_path / "a.mp4"
    write_video(out, gradient_frames(12, 64, 48), fps=24, audio_from=WEBM)
    assert sorted(os.listdir(tmp_path)) == ["a.mp4"]
    info = zio.probe_video(out)
    assert info.has_audio and info.audio_codec == "aac"
    assert meta(out)["audio_codec"].startswith("aac")
    assert count_frames(out) == 12  # audio never shortens the video
    assert info.duration == pytest.approx(0.5, abs=0.06)  # audio cut to the video's length


def test_audio_is_copied_into_mkv_unless_cut_later(tmp_path):
    """A copy is exact only from the source's start; a later start is re-encoded so the video stays at 0 s."""
    for start, codec in [(0.0, "vorbis"), (0.5, "aac")]:
        out = tmp_path / f"a{start}.mkv"
        write_video(out, gradient_frames(6, 64, 48), fps=24, audio_from=WEBM, audio_start=start)
        info = zio.probe_video(out)
        assert info.audio_codec == codec
        assert count_frames(out) == 6 and info.duration == pytest.approx(0.25, abs=0.06)


def test_audio_from_audio_only_file(tmp_path):
    wav = tmp_path / "tone.wav"
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=440:duration=1", str(wav))
    out = tmp_path / "a.mp4"
    write_video(out, gradient_frames(6, 32, 32), fps=24, audio_from=wav)
    assert zio.probe_video(out).audio_codec == "aac"
    data = out.read_bytes()
    assert data.find(b"moov") < data.find(b"mdat")


def test_failure_at_close_leaves_nothing(tmp_path):
    """The audio pass runs at close(); if it fails, both temporary files go and no output appears."""
    wav = tmp_path / "tone.wav"
    ffmpeg("-f", "lavfi", "-i", "sine=duration=1", str(wav))
    out = tmp_path / "a.mp4"
    w = zio.VideoWriter(out, 24, audio_from=wav)
    for f in gradient_frames(4, 32, 32):
        w.write(f)
    wav.write_text("no longer audio\n")
    with pytest.raises(ZoomdreamError, match="cannot add audio") as err:
        w.close()
    assert_one_line_naming(err, wav)
    assert os.listdir(tmp_path) == ["tone.wav"]


def test_audio_from_silent_source_gives_no_audio(tmp_path):
    out = tmp_path / "a.mp4"
    write_video(out, gradient_frames(6, 32, 32), fps=24, audio_from=MP4)
    info = zio.probe_video(out)
    assert not info.has_audio and info.audio_codec is None
    assert count_frames(out) == 6


def test_audio_from_missing_file_fails_before_writing(tmp_path):
    with pytest.raises(ZoomdreamError, match="not found") as err:
        zio.VideoWriter(tmp_path / "a.mp4", 24, audio_from=tmp_path / "gone.webm")
    assert_one_line_naming(err, tmp_path / "gone.webm")
    assert os.listdir(tmp_path) == []


def test_gif_writer_loops_forever(tmp_path):
    out = tmp_path / "a.gif"
    write_video(out, gradient_frames(10, 40, 30), fps=10)
    assert os.listdir(tmp_path) == ["a.gif"]
    frames = iio.imread(out, index=None)
    assert frames.shape[:3] == (10, 30, 40)
    assert iio.immeta(out)["loop"] == 0
    assert b"NETSCAPE2.0\x03\x01\x00\x00" in out.read_bytes()


def test_gif_fps_and_width(tmp_path):
    out = tmp_path / "a.gif"
    write_video(out, gradient_frames(10, 40, 30), fps=10, gif_fps=5, gif_width=20)
    frames = iio.imread(out, index=None)
    assert frames.shape[:3] == (5, 15, 20)


@pytest.mark.parametrize("fps,delays", [(24, {40, 50}), (30, {30, 40}), (12, {80, 90})])
def test_gif_delays_keep_the_frame_rate(tmp_path, fps, delays):
    """GIF delays are whole centiseconds: 24 fps must mix 40 and 50 ms (not 40 ms throughout, which is 25 fps)
    so the clip lasts as long as the video would. Read back frame by frame with PIL."""
    out = tmp_path / "a.gif"
    write_video(out, gradient_frames(48, 16, 16), fps=fps)
    with Image.open(out) as gif:
        found = []
        for index in range(gif.n_frames):
            gif.seek(index)
            found.append(gif.info["duration"])
    assert len(found) == 48 and set(found) == delays
    assert abs(sum(found) - 48 * 1000 / fps) <= 10  # within one centisecond over two seconds


def test_exception_inside_with_leaves_nothing(tmp_path):
    out = tmp_path / "a.mp4"
    with pytest.raises(RuntimeError, match="boom"):
        with zio.VideoWriter(out, 24, audio_from=WEBM) as w:
            for f in gradient_frames(5, 32, 32):
                w.write(f)
            raise RuntimeError("boom")
    assert os.listdir(tmp_path) == []


def test_abort_keeps_existing_output_untouched(tmp_path):
    out = tmp_path / "a.gif"
    out.write_bytes(b"previous result")
    w = zio.VideoWriter(out, 10)
    for f in gradient_frames(3, 16, 16):
        w.write(f)
    w.abort()
    w.close()  # no-op after abort
    assert os.listdir(tmp_path) == ["a.gif"]
    assert out.read_bytes() == b"previous result"


def test_dropped_writer_stops_ffmpeg_and_leaves_nothing(tmp_path):
    w = zio.VideoWriter(tmp_path / "a.mp4", 24)
    w.write(gradient_frames(1, 32, 32)[0])
    proc = w._ff.proc
    del w
    assert proc.poll() is not None
    assert os.listdir(tmp_path) == []


def test_close_without_frames_is_an_error_and_leaves_nothing(tmp_path):
    out = tmp_path / "a.mp4"
    with pytest.raises(ZoomdreamError, match="no frames") as err:
        with zio.VideoWriter(out, 24):
            pass
    assert_one_line_naming(err, out)
    assert os.listdir(tmp_path) == []


def test_frame_size_change_is_rejected(tmp_path):
    with zio.VideoWriter(tmp_path / "a.mp4", 24) as w:
        w.write(np.zeros((16, 16, 3), np.uint8))
        with pytest.raises(ValueError, match="differs"):
            w.write(np.zeros((16, 18, 3), np.uint8))
    assert count_frames(tmp_path / "a.mp4") == 1


def test_bad_encoder_option_reports_ffmpeg_error(tmp_path):
    out = tmp_path / "a.mp4"
    w = zio.VideoWriter(out, 24, preset="warp-speed")
    with pytest.raises(ZoomdreamError, match="invalid preset 'warp-speed'") as err:
        for f in gradient_frames(50, 32, 32):
            w.write(f)
        w.close()
    assert_one_line_naming(err, out)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("ext, cls", [(".mp4", writer.H264Writer), (".MOV", writer.H264Writer),
                                      (".mkv", writer.H264Writer), (".gif", writer.GifWriter),
                                      (".webp", writer.WebpWriter)])
def test_writer_table_picks_the_class_per_extension(tmp_path, ext, cls):
    w = zio.VideoWriter(tmp_path / f"a{ext}", 24)
    assert type(w) is cls
    w.abort()
    assert zio.VIDEO_EXTENSIONS == (".mp4", ".mov", ".mkv", ".gif", ".webp")


def photo_frames(n: int, size: int) -> list[np.ndarray]:
    """A pan across the cat photo: the photographic texture GIF's 256 colours fit worst."""
    photo = zio.read_image(Path(__file__).parent.parent / "samples" / "chelsea.png")
    return [np.ascontiguousarray(photo[100:100 + size, 150 + 3 * i:150 + 3 * i + size]) for i in range(n)]


def passthrough_frames(path: Path, size: int) -> np.ndarray:
    """Every frame a GIF or WebP holds, as stored (not resampled to a rate)."""
    import subprocess

    from zoomdream.media.ffmpeg import ffmpeg_exe

    raw = subprocess.run([ffmpeg_exe(), "-v", "error", "-i", str(path), "-fps_mode", "passthrough", "-f",
                          "rawvideo", "-pix_fmt", "rgb24", "pipe:1"], capture_output=True, check=True).stdout
    return np.frombuffer(raw, np.uint8).reshape(-1, size, size, 3)


def test_webp_loops_and_is_a_fraction_of_a_gif(tmp_path):
    """Sizes and quality on dream frames are scripts/bench_gif.py's; here: a looping animated WebP that holds
    every frame, close to them, in under half a GIF's bytes."""
    frames = photo_frames(8, 96)
    psnr = {}
    for ext in (".gif", ".webp"):
        write_video(tmp_path / f"a{ext}", frames, fps=12)
        got = passthrough_frames(tmp_path / f"a{ext}", 96).astype(np.float64)
        assert len(got) == 8
        psnr[ext] = 10 * np.log10(255 ** 2 / np.mean((got - np.array(frames, np.float64)) ** 2))
    data = (tmp_path / "a.webp").read_bytes()
    assert data[:4] == b"RIFF" and data[8:12] == b"WEBP" and b"ANIM" in data
    assert (tmp_path / "a.webp").stat().st_size < 0.5 * (tmp_path / "a.gif").stat().st_size
    assert psnr[".webp"] > 33, psnr


def test_gif_ignores_audio_and_crf(tmp_path):
    out = tmp_path / "a.gif"
    write_video(out, gradient_frames(3, 16, 16), fps=10, audio_from=tmp_path / "gone.webm", crf=30)
    assert os.listdir(tmp_path) == ["a.gif"]


def test_unsupported_video_extension(tmp_path):
    with pytest.raises(ZoomdreamError, match=r"\.mp4 \.mov \.mkv \.gif \.webp") as err:
        zio.VideoWriter(tmp_path / "a.avi", 24)
    assert_one_line_naming(err, tmp_path / "a.avi")


# ---------------------------------------------------------------------------------------------- probe_video


def test_probe_webm_with_audio():
    info = zio.probe_video(WEBM)
    assert (info.width, info.height) == (1280, 720)
    assert info.fps == 24
    assert info.n_frames == 24
    assert info.duration == pytest.approx(1.0, abs=0.01)
    assert info.has_audio and info.audio_codec == "vorbis"
    assert info.video_codec == "vp8"


def test_probe_mp4_without_audio():
    info = zio.probe_video(MP4)
    assert (info.width, info.height) == (640, 480)
    assert info.fps == 25
    assert info.n_frames == 50
    assert not info.has_audio and info.audio_codec is None
    assert info.video_codec == "h264"


def test_probe_and_read_rotated_video(tmp_path):
    rotated = tmp_path / "rot.mp4"
    ffmpeg("-display_rotation", "90", "-i", str(MP4), "-c", "copy", str(rotated))
    info = zio.probe_video(rotated)
    assert (info.width, info.height) == (480, 640)
    with zio.read_video(rotated, duration=0.2) as frames:
        assert [f.shape for f in frames] == [(640, 480, 3)] * 5


def test_probe_variable_rate_gif(tmp_path):
    gif = tmp_path / "vfr.gif"
    frames = np.stack(gradient_frames(4, 20, 16))
    iio.imwrite(gif, frames, duration=[100, 300, 100, 300], loop=0)  # 0.8 s, average 5 fps
    info = zio.probe_video(gif)
    assert info.fps == 5 and info.n_frames == 4
    got = list(zio.read_video(gif))
    assert len(got) == info.n_frames  # constant-rate output
    assert got[0].shape == (16, 20, 3)


def test_probe_missing_and_non_video(tmp_path):
    with pytest.raises(ZoomdreamError, match="not found") as err:
        zio.probe_video(tmp_path / "gone.mp4")
    assert_one_line_naming(err, tmp_path / "gone.mp4")
    junk = tmp_path / "junk.mp4"
    junk.write_text("not a video at all\n" * 10)
    with pytest.raises(ZoomdreamError) as err:
        zio.probe_video(junk)
    assert_one_line_naming(err, junk)


def test_probe_audio_only_file_has_no_video(tmp_path):
    wav = tmp_path / "tone.wav"
    ffmpeg("-f", "lavfi", "-i", "sine=duration=0.2", str(wav))
    with pytest.raises(ZoomdreamError, match="no video stream") as err:
        zio.probe_video(wav)
    assert_one_line_naming(err, wav)


# ---------------------------------------------------------------------------------------------- read_video


def test_read_video_all_frames():
    frames = list(zio.read_video(MP4))
    assert len(frames) == 50
    assert all(f.shape == (480, 640, 3) and f.dtype == np.uint8 for f in frames)
    frames[0][0, 0] = 0  # frames are ordinary writable arrays


def test_read_video_start_and_duration():
    assert sum(1 for _ in zio.read_video(MP4, start=0.5, duration=1.0)) == 25


def test_read_video_start_skips_frames():
    full = list(zio.read_video(MP4))
    later = next(iter(zio.read_video(MP4, start=1.0)))
    errors = [np.abs(later.astype(int) - f).mean() for f in full]
    assert int(np.argmin(errors)) == 25


def test_read_video_every():
    assert sum(1 for _ in zio.read_video(MP4, every=2)) == 25


def test_read_video_max_size():
    frames = list(zio.read_video(WEBM, max_size=320))
    assert len(frames) == 24
    assert {f.shape for f in frames} == {(180, 320, 3)}
    first = next(iter(zio.read_video(MP4, max_size=320, duration=0.1)))
    assert first.shape == (240, 320, 3)


def test_read_video_closing_early_stops_ffmpeg():
    reader = zio.read_video(WEBM)
    next(reader)
    proc = reader._ff.proc
    assert proc.poll() is None
    reader.close()
    assert proc.poll() is not None
    assert next(reader, None) is None


def test_read_video_with_block_stops_ffmpeg():
    with zio.read_video(WEBM) as frames:
        assert next(frames).shape == (720, 1280, 3)
        proc = frames._ff.proc
        assert proc.poll() is None
    assert proc.poll() is not None


def test_read_video_starts_ffmpeg_only_when_asked_for_frames():
    reader = zio.read_video(MP4)
    assert reader._ff is None
    reader.close()
    assert list(reader) == []


def test_read_video_ends_quietly_after_the_last_frame():
    reader = zio.read_video(MP4, duration=0.2)
    assert len(list(reader)) == 5
    assert reader._ff.proc.poll() == 0
    assert next(reader, None) is None


def test_read_video_bad_arguments(tmp_path):
    with pytest.raises(ZoomdreamError, match="only 2.00 s long"):
        zio.read_video(MP4, start=5)
    with pytest.raises(ZoomdreamError, match="every"):
        zio.read_video(MP4, every=0)
    with pytest.raises(ZoomdreamError, match="not found"):
        zio.read_video(tmp_path / "gone.mp4")


# ---------------------------------------------------------------------------------------------- frame folders


def test_frame_names_sort_by_index(tmp_path):
    indices = [0, 7, 9999, 10000, 123456]
    names = [zio.frame_path(tmp_path, i).name for i in indices]
    assert names[2] == "frame_00009999.png"
    assert sorted(names) == names
    assert sorted(reversed(names)) == names


def test_numbered_frames_and_list_frames(tmp_path):
    d = zio.make_folder(tmp_path / "frames" / "nested")
    frames = gradient_frames(3, 8, 6)
    for i, f in enumerate(frames, start=9999):
        zio.write_image(zio.frame_path(d, i), f)
    # leftovers of an interrupted write and unrelated files are not frames
    (d / ".frame_00010002.part.png").write_bytes(b"half")
    (d / "frame_00010003.png.tmp").write_bytes(b"half")
    (d / "notes.txt").write_text("x")
    listed = zio.list_frames(d)
    assert listed == [zio.frame_path(d, i) for i in (9999, 10000, 10001)]
    for path, f in zip(listed, frames):
        np.testing.assert_array_equal(zio.read_image(path), f)


def test_list_frames_sorts_numerically_past_eight_digits(tmp_path):
    for i in (5, 123456789, 99999999):
        zio.write_image(zio.frame_path(tmp_path, i), np.zeros((2, 2, 3), np.uint8))
    assert [p.name for p in zio.list_frames(tmp_path)] == [
        "frame_00000005.png", "frame_99999999.png", "frame_123456789.png"]
    assert zio.list_frames(tmp_path / "missing") == []


def test_frames_folder_that_is_a_file_is_refused(tmp_path):
    f = tmp_path / "frames"
    f.write_text("x")
    with pytest.raises(ZoomdreamError, match="is a file") as err:
        zio.make_folder(f)
    assert_one_line_naming(err, f)


def test_ntsc_rate_helper():
    assert zffmpeg.fps_fraction(29.97) == Fraction(30000, 1001)
    assert zffmpeg.fps_fraction(23.976) == Fraction(24000, 1001)
    assert zffmpeg.fps_fraction(30) == 30
    assert zffmpeg.fps_fraction(12.5) == Fraction(25, 2)


def test_read_image_falls_back_to_pillow_when_opencv_cannot_decode(tmp_path, monkeypatch):
    """Older OpenCV builds cannot decode GIF; Pillow then reads it, alpha still over white."""
    iio.imwrite(tmp_path / "a.gif", np.stack(gradient_frames(2, 8, 6)), duration=100, loop=0)
    Image.fromarray(np.array([[[1, 2, 3, 0], [4, 5, 6, 255]]], np.uint8), "RGBA").save(tmp_path / "a.png")
    monkeypatch.setattr(images.cv2, "imdecode", lambda *a: None)
    assert zio.read_image(tmp_path / "a.gif").shape == (6, 8, 3)
    assert zio.read_image(tmp_path / "a.png").tolist() == [[[255, 255, 255], [4, 5, 6]]]


def test_read_video_reports_ffmpeg_failure(tmp_path):
    """ffmpeg starts on the first next(); a file that went bad since the probe must raise, not end quietly."""
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(MP4.read_bytes())
    frames = zio.read_video(clip)
    clip.write_text("gone bad\n" * 100)
    with pytest.raises(ZoomdreamError, match="ffmpeg said") as err:
        list(frames)
    assert_one_line_naming(err, clip)
