"""The infinite-zoom loop: frame counts and codecs read back, determinism, and exact resume."""
import os

import imageio.v3 as iio
import numpy as np
import pytest

from zoomdream import media, runner
from zoomdream.config import make_job
from zoomdream.errors import ZoomdreamError
from zoomdream.loops import zoom
from zoomdream.schedules import parse_text_schedule

SAMPLES = os.path.join(os.path.dirname(__file__), "..", "samples")


def zoom_job(tmp_path, name="zoom.mp4", **overrides):
    values = dict(command="zoom", noise=True, size="64x48", frames=4, octaves=1, steps=2, tile=64,
                  layers="block5", output=str(tmp_path / name), seed=3)
    values.update(overrides)
    return make_job(values)


def frames_of(directory):
    return [iio.imread(p) for p in media.list_frames(directory)]


def test_mp4_has_every_frame_h264_yuv420p(tmp_path, lite0):
    job = zoom_job(tmp_path, frames=5, fps=12)
    runner.render(job, progress=False, model=lite0)
    info = media.probe_video(job.output)
    assert (info.width, info.height) == (64, 48)
    assert info.fps == pytest.approx(12)
    assert sum(1 for _ in media.read_video(job.output)) == 5
    assert (info.video_codec, info.pix_fmt) == ("h264", "yuv420p")
    assert not (tmp_path / "zoom.mp4.zoomdream").exists()
    assert (tmp_path / "zoom.job.toml").exists()


def test_gif_loops_with_every_frame(tmp_path, lite0):
    job = zoom_job(tmp_path, name="zoom.gif", frames=4, fps=8)
    runner.render(job, progress=False, model=lite0)
    frames = iio.imread(job.output, index=None)
    assert frames.shape[0] == 4
    assert iio.immeta(job.output).get("loop") == 0


def test_noise_start_is_deterministic_under_seed(tmp_path, lite0):
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        runner.render(zoom_job(tmp_path, name=f"{name}.mp4", frames=2, seed=seed,
                                   frames_dir=str(tmp_path / name)), progress=False, model=lite0)
    a, b, c = (frames_of(tmp_path / n) for n in "abc")
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[1], c[1])


def test_frames_are_dreamed_and_move(tmp_path, lite0):
    job = zoom_job(tmp_path, frames=3, frames_dir=str(tmp_path / "f"), zoom="1.1")
    runner.render(job, progress=False, model=lite0)
    frames = frames_of(tmp_path / "f")
    assert len(frames) == 3
    assert all(np.abs(a.astype(int) - b).mean() > 1 for a, b in zip(frames, frames[1:]))


def test_resume_equals_uninterrupted_run(tmp_path, lite0, interrupt_after):
    whole = zoom_job(tmp_path, name="whole.mp4", frames_dir=str(tmp_path / "whole"), zoom="0:(1.05), 3:(1.1)",
                     angle="2*sin(t)")
    runner.render(whole, progress=False, model=lite0)

    job = zoom_job(tmp_path, name="cut.mp4", frames_dir=str(tmp_path / "cut"), zoom="0:(1.05), 3:(1.1)",
                   angle="2*sin(t)")
    with pytest.raises(KeyboardInterrupt):
        runner.render(job, progress=False, model=lite0, sinks=(interrupt_after(2),))
    assert not os.path.exists(job.output), "a final file appeared before the render finished"
    assert len(media.list_frames(tmp_path / "cut")) == 2

    with pytest.raises(ZoomdreamError, match="--resume"):
        runner.render(job, progress=False, model=lite0)
    with pytest.raises(ZoomdreamError, match="settings or input differ"):
        runner.render(zoom_job(tmp_path, name="cut.mp4", frames_dir=str(tmp_path / "cut"), resume=True,
                                   steps=3), progress=False, model=lite0)

    from dataclasses import replace

    runner.render(replace(job, resume=True), progress=False, model=lite0)
    resumed, reference = frames_of(tmp_path / "cut"), frames_of(tmp_path / "whole")
    assert len(resumed) == len(reference) == 4
    for a, b in zip(resumed, reference):
        np.testing.assert_array_equal(a, b)
    assert sum(1 for _ in media.read_video(job.output)) == 4


def test_keyframed_layers_blend(lite0):
    terms, weights_at = zoom.layer_blend(parse_text_schedule("0:(block5:1,block8:0.5), 10:(block8)"))
    assert [t.layer for t in terms] == ["block5", "block8"]
    np.testing.assert_allclose(weights_at(0), [1.0, 0.5])
    np.testing.assert_allclose(weights_at(5), [0.5, 0.75])
    np.testing.assert_allclose(weights_at(20), [0.0, 1.0])


def test_image_start_from_file(tmp_path, lite0):
    job = zoom_job(tmp_path, noise=False, input=os.path.join(SAMPLES, "chelsea.png"), max_size=64, frames=2)
    runner.render(job, progress=False, model=lite0)
    info = media.probe_video(job.output)
    assert (info.width, info.height) == (64, 42)


def test_preview_shows_latest_frame(tmp_path, lite0):
    job = zoom_job(tmp_path, frames=3, preview=1, frames_dir=str(tmp_path / "f"))
    runner.render(job, progress=False, model=lite0)
    preview = iio.imread(tmp_path / "zoom.preview.png")
    np.testing.assert_array_equal(preview, frames_of(tmp_path / "f")[-1])


def test_color_match_pulls_statistics_to_the_reference():
    rng = np.random.default_rng(0)
    img = rng.uniform(-0.2, 0.6, (40, 50, 3)).astype(np.float32)
    reference = (np.array([0.1, -0.2, 0.0]), np.array([0.3, 0.2, 0.25]))
    mean, std = zoom.stats(zoom.color_match(img, reference, 1.0))
    np.testing.assert_allclose(mean, reference[0], atol=1e-4)
    np.testing.assert_allclose(std, reference[1], atol=1e-4)
    half_mean, _ = zoom.stats(zoom.color_match(img, reference, 0.5))
    np.testing.assert_allclose(half_mean, (zoom.stats(img)[0] + reference[0]) / 2, atol=1e-4)
    assert zoom.color_match(img, reference, 0.0) is img


def test_feedback_blurs_the_centre_lines_like_the_rest(tmp_path, lite0):
    """Bilinear resampling barely blurs the row and column through the zoom's fixed point, so frame after
    frame the feedback kept their detail and lines crossed the centre of long zooms. Undreamed feedback
    (steps 0) must soften the rows and columns through the centre as much as the others."""
    job = zoom_job(tmp_path, size="64x64", frames=25, steps="0", zoom="1.05", frames_dir=str(tmp_path / "f"))
    runner.render(job, progress=False, model=lite0)
    gray = frames_of(tmp_path / "f")[-1].astype(np.float32).mean(axis=2)
    energy = np.gradient(gray, axis=0) ** 2 + np.gradient(gray, axis=1) ** 2
    for profile in (energy.mean(axis=1), energy.mean(axis=0)):
        assert profile[31:33].max() < 1.3 * np.median(profile)
