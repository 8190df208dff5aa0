"""Music-driven dreams: audio features on synthetic tracks made here (clicks, tones, levels), schedules that read
them, the track muxed into zooms and videos, the saved job's track hash, `zoomdream curves` and
`--export-schedules`."""
import math
import re
from dataclasses import replace
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zoomdream import audio, curves, media, runner
from zoomdream.cli import main
from zoomdream.config import load_toml, make_job
from zoomdream.errors import ZoomdreamError
from zoomdream.loops import zoom
from zoomdream.schedules import Schedule, parse_schedule
from zoomdream.sinks import Sink

DATA = Path(__file__).parent / "data"
RATE = 44100


def clicks(path, bpm=120.0, seconds=12.0, offset=0.25, rate=RATE):
    """A click track: 10 ms bursts of a decaying 1 kHz tone every beat from ``offset``; returns the click times."""
    x = np.zeros(int(seconds * rate))
    n = int(0.01 * rate)
    burst = 0.8 * np.sin(2 * np.pi * 1000 * np.arange(n) / rate) * np.exp(-np.arange(n) / (0.003 * rate))
    times = np.arange(offset, seconds - 0.05, 60.0 / bpm)
    for c in times:
        i = int(round(c * rate))
        x[i:i + n] += burst
    audio.write_wav(path, x, rate)
    return times


def tones(path, parts, rate=RATE):
    """Consecutive sine tones: ``parts`` is a list of (frequency in Hz, amplitude, seconds)."""
    x = np.concatenate([a * np.sin(2 * np.pi * f * np.arange(int(s * rate)) / rate) for f, a, s in parts])
    audio.write_wav(path, x, rate)


def peaks(values, threshold=0.3):
    """Frames where values are a local maximum at or above threshold."""
    v = np.asarray(values)
    padded = np.concatenate([[-1.0], v, [-1.0]])
    return np.flatnonzero((v >= threshold) & (v >= padded[:-2]) & (v > padded[2:]))


@pytest.fixture(scope="module")
def click_wav(tmp_path_factory):
    path = tmp_path_factory.mktemp("music") / "clicks.wav"
    return path, clicks(path)


# ---------------------------------------------------------------------------------------------------------
# Features


@pytest.mark.parametrize("offset", [0.25, 0.013, 0.3])
def test_onset_peaks_within_one_frame_of_every_click(tmp_path, offset):
    path = tmp_path / "clicks.wav"
    times = clicks(path, offset=offset)
    onset = audio.analyse(path, 24).series["onset"]
    found, wanted = peaks(onset), np.floor(times * 24).astype(int)
    hits = [any(abs(p - w) <= 1 for p in found) for w in wanted]
    true = [any(abs(p - w) <= 1 for w in wanted) for p in found]
    assert sum(hits) / len(wanted) >= 0.95, (found, wanted)
    assert sum(true) / len(found) >= 0.95, (found, wanted)


def test_beat_and_bpm_agree_with_120(click_wav):
    path, times = click_wav
    features = audio.analyse(path, 24)
    assert abs(features.bpm - 120) / 120 <= 0.02
    beats = np.flatnonzero(features.series["beat"] == 1.0)
    assert len(beats) >= 0.9 * len(times)
    assert abs(60 * 24 / np.median(np.diff(beats)) - 120) / 120 <= 0.02
    assert all(np.min(np.abs(beats - c * 24)) <= 1 for c in times[1:-1])
    after = features.series["beat"][beats[3]: beats[4]]  # decays to 2% by the next beat
    assert after[0] == 1.0 and np.all(np.diff(after) < 0)
    assert after[-1] == pytest.approx(math.exp(-4 * 11 / 12), rel=0.02)


def test_bass_and_treble_split_a_two_tone_track(tmp_path):
    path = tmp_path / "tones.wav"
    tones(path, [(60, 0.5, 2.0), (5000, 0.5, 2.0)])
    f = audio.analyse(path, 24).series
    first, second = slice(1, 46), slice(50, 95)  # the switch is at frame 48
    assert np.all(f["bass"][first] >= 10 * f["treble"][first])
    assert np.all(f["treble"][second] >= 10 * f["bass"][second])
    assert f["bass"][first].min() > 0.9 and f["treble"][second].min() > 0.9


def test_loudness_is_the_level_in_db_mapped_to_0_1(tmp_path):
    path = tmp_path / "levels.wav"
    tones(path, [(440, 0.5, 1.0), (440, 0.05, 1.0), (440, 0.005, 1.0)])  # 0, -20 and -40 dB
    loudness = audio.analyse(path, 10).series["loudness"]
    np.testing.assert_allclose(loudness[2:8], 1.0, atol=0.01)
    np.testing.assert_allclose(loudness[12:18], 0.5, atol=0.01)
    np.testing.assert_allclose(loudness[22:28], 0.0, atol=0.01)


@pytest.mark.parametrize("fps", [12, 24, 29.97, 60, 120])
def test_exactly_one_value_per_frame(tmp_path, fps):
    path = tmp_path / "tones.wav"
    tones(path, [(220, 0.3, 1.3), (3000, 0.3, 1.0)])
    features = audio.analyse(path, fps)
    assert features.duration == pytest.approx(2.3, abs=1e-4)
    assert features.frames == round(2.3 * fps)
    for name in audio.SERIES:
        values = features.series[name]
        assert len(values) == math.ceil(2.3 * fps - 1e-9), name
        assert np.all(np.isfinite(values)) and values.min() >= 0 and values.max() <= 1, name
    assert features.value("onset", len(features.series["onset"])) == 0.0  # past the end: silence


def test_chunked_decoding_gives_the_same_features(click_wav):
    path, _ = click_wav
    small, whole = audio.analyse(path, 24, chunk=1000), audio.analyse(path, 24, chunk=1 << 22)
    assert small.bpm == whole.bpm
    for name in audio.SERIES:
        np.testing.assert_allclose(small.series[name], whole.series[name], atol=1e-6)


def test_reads_the_soundtrack_of_a_video_file():
    features = audio.analyse(DATA / "big_buck_bunny_432_433.webm", 24)
    assert features.duration == pytest.approx(1.0, abs=0.05)
    assert len(features.series["loudness"]) == math.ceil(features.duration * 24)
    assert features.series["loudness"].max() == 1.0 and features.series["loudness"].min() < 0.9


def test_audio_start_and_duration_pick_a_range(click_wav):
    path, times = click_wav
    features = audio.analyse(path, 24, start=1.0, duration=2.0)
    assert features.duration == pytest.approx(2.0, abs=1e-4)
    wanted = np.floor((times[(times >= 1.0) & (times < 3.0)] - 1.0) * 24).astype(int)
    found = peaks(features.series["onset"])
    assert all(np.min(np.abs(found - w)) <= 1 for w in wanted) and len(found) == len(wanted)


def test_smooth_rises_at_once_and_falls_with_its_time_constant(click_wav):
    path, _ = click_wav
    track = audio.Track(path, 0.0, None, 24.0)
    onset = track.features.series["onset"]
    click = peaks(onset)[2]
    fast = parse_schedule("smooth(onset, 0.25)", name="--zoom", variables=track)
    assert fast.at(click) == onset[click]
    assert fast.at(click + 6) == pytest.approx(onset[click] * math.exp(-1), rel=0.01)  # 6 frames = 0.25 s
    slow_rise = parse_schedule("smooth(onset, 0.1, 0.25)", name="--zoom", variables=track)
    before = slow_rise.at(click - 1)
    assert slow_rise.at(click) == pytest.approx(before + (1 - math.exp(-1 / 2.4)) * (onset[click] - before))


@pytest.mark.parametrize("text, variables, message", [
    ("1.01+0.04*onsett", True, "'onsett' is not allowed .*valid names: t, pi, e, tau, loudness, onset, bass, mid, "
                               "treble, beat, bpm"),
    ("1+0.1*onset", False, "onset is an audio feature: give --audio FILE"),
    ("smooth(t, 1)", True, "smooth's first argument is one of loudness, onset"),
    ("smooth(bass, t)", True, "smooth's times are plain numbers of seconds"),
    ("smooth(bass)", True, "write smooth\\(onset, 0.5\\)"),
])
def test_names_a_schedule_cannot_read_are_named(click_wav, text, variables, message):
    track = audio.Track(click_wav[0], 0.0, None, 24.0) if variables else None
    with pytest.raises(ZoomdreamError, match=message):
        parse_schedule(text, name="--zoom", variables=track)


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err.strip()
    return code, err


@pytest.mark.parametrize("case, message", [
    ("missing", "cannot read audio from .*file not found"),
    ("garbage", "cannot read audio from .*ffmpeg could not open it"),
    ("silent video", "has no audio stream"),
    ("past the end", "has no audio from 30 s on"),
    ("start without audio", "describe an --audio FILE"),
    ("unknown name", "valid names: t, pi, e, tau, loudness"),
])
def test_bad_audio_is_one_line_and_exit_2(tmp_path, capsys, click_wav, case, message):
    (tmp_path / "garbage.mp3").write_bytes(b"\x00not audio" * 100)
    argv = {"missing": ["--audio", tmp_path / "nope.wav"], "garbage": ["--audio", tmp_path / "garbage.mp3"],
            "silent video": ["--audio", DATA / "example.mp4"],
            "past the end": ["--audio", click_wav[0], "--audio-start", 30],
            "start without audio": ["--audio-start", 1],
            "unknown name": ["--audio", click_wav[0], "--zoom", "1+onsett"]}[case]
    code, err = run(capsys, "zoom", "--noise", "--size", "64x48", "-o", tmp_path / "out.mp4", *argv)
    assert code == 2 and len(err.splitlines()) == 1
    assert err.startswith("zoomdream: error:")
    assert re.search(message, err), err
    assert not (tmp_path / "out.mp4.zoomdream").exists()


def test_gif_output_ignores_audio_with_a_note(tmp_path, capsys, click_wav):
    job = make_job(dict(command="zoom", noise=True, size="64x48", audio=str(click_wav[0]), frames=3,
                        output=str(tmp_path / "out.gif")))
    settings = zoom.resolve(job)
    assert "a GIF has no sound" in capsys.readouterr().err
    assert settings.audio is not None and settings.frames == 3


# ---------------------------------------------------------------------------------------------------------
# Renders


def music_job(tmp_path, track, **overrides):
    values = dict(command="zoom", noise=True, size="48x32", fps=12, octaves=1, steps=1, tile=64, layers="block5",
                  audio=str(track), zoom="1.01+0.04*onset", output=str(tmp_path / "zoom.mp4"), seed=1,
                  export_schedules=str(tmp_path / "schedules.csv"))
    values.update(overrides)
    return make_job(values)


def audio_seconds(path):
    return sum(len(chunk) for chunk in audio.decode(path)) / audio.RATE


def test_zoom_lasts_as_long_as_the_track_and_plays_it(tmp_path, lite0, monkeypatch):
    track = tmp_path / "clicks.wav"
    clicks(track, seconds=1.5, offset=0.1)
    used = {}
    at = Schedule.at

    def spy(self, t):
        value = at(self, t)
        if self.name == "--zoom":
            used[t] = value
        return value

    monkeypatch.setattr(Schedule, "at", spy)

    class ScheduleFirst(Sink):  # the CSV is there before the first frame is kept
        def write(self, index, frame):
            assert index > 0 or (tmp_path / "schedules.csv").is_file()

    job = music_job(tmp_path, track)
    runner.render(job, progress=False, model=lite0, sinks=(ScheduleFirst(),))
    frames = round(1.5 * 12)
    assert sum(1 for _ in media.read_video(job.output)) == frames
    video_seconds = frames / 12
    assert abs(audio_seconds(job.output) - video_seconds) <= 1 / 12
    onset = audio.analyse(track, 12).series["onset"]
    assert all(used[t] == 1.01 + 0.04 * onset[t] for t in range(1, frames))  # exactly, every rendered frame
    table = curves.read_csv(tmp_path / "schedules.csv")
    assert len(table["frame"]) == frames
    np.testing.assert_array_equal(table["zoom"], 1.01 + 0.04 * table["onset"])
    saved = load_toml(tmp_path / "zoom.job.toml")
    assert saved["frames"] == frames and saved["audio"] == "clicks.wav"  # beside the job file: saved relative
    assert saved["audio_sha256"] == audio.file_sha256(track)


def test_resume_refuses_a_changed_track(tmp_path, lite0, interrupt_after, capsys):
    track = tmp_path / "clicks.wav"
    clicks(track, seconds=1.0, offset=0.1)
    job = music_job(tmp_path, track, export_schedules=None, frames=4)
    with pytest.raises(KeyboardInterrupt):
        runner.render(job, progress=False, model=lite0, sinks=(interrupt_after(2),))
    clicks(track, seconds=1.0, offset=0.3)  # the same name, other music
    with pytest.raises(ZoomdreamError, match="settings or input differ"):
        runner.render(replace(job, resume=True), progress=False, model=lite0)
    record = tmp_path / "zoom.mp4.zoomdream" / "job.toml"
    code, err = run(capsys, "render", record, "--resume")
    assert code == 2 and "is not the track this job was made with" in err and len(err.splitlines()) == 1


def test_video_reads_its_own_soundtrack_and_takes_another(tmp_path, lite0, capsys):
    clip = DATA / "big_buck_bunny_432_433.webm"
    job = make_job(dict(command="video", input=str(clip), output=str(tmp_path / "curves.png"), max_size=64,
                        step_size="0.01+0.02*loudness", export_schedules=str(tmp_path / "own.csv")))
    curves.write_curves(job)
    table = curves.read_csv(tmp_path / "own.csv")
    assert len(table["frame"]) == 24 and table["loudness"].max() == 1.0
    np.testing.assert_array_equal(table["step_size"], 0.01 + 0.02 * table["loudness"])

    code, err = run(capsys, "video", DATA / "example.mp4", "-o", tmp_path / "x.mp4", "--step-size", "0.02*onset")
    assert code == 2 and "onset is an audio feature: give --audio FILE" in err

    track = tmp_path / "clicks.wav"
    clicks(track, seconds=2.0, offset=0.1)
    job = make_job(dict(command="video", input=str(clip), output=str(tmp_path / "out.mp4"), max_size=64,
                        duration=0.5, octaves=1, steps="1+onset", tile=64, audio=str(track)))
    runner.render(job, progress=False, model=lite0)
    assert sum(1 for _ in media.read_video(job.output)) == 12
    assert abs(audio_seconds(job.output) - 0.5) <= 1 / 24
    saved = load_toml(tmp_path / "out.job.toml")
    assert saved["audio_sha256"] == audio.file_sha256(track)


# ---------------------------------------------------------------------------------------------------------
# curves and --export-schedules


def test_curves_png_plots_what_the_csv_holds(tmp_path, capsys, click_wav):
    png, csv = tmp_path / "curves.png", tmp_path / "schedules.csv"
    argv = ["curves", "zoom", "--noise", "--size", "64x48", "--audio", click_wav[0], "--zoom", "1.01+0.04*onset",
            "--angle", "2*sin(t/30)*smooth(loudness, 0.5)", "--layers", "0:(block8), 100:(block12)",
            "-o", png, "--export-schedules", csv]
    code, err = run(capsys, *argv)
    assert code == 0, err
    table = curves.read_csv(csv)
    assert list(table)[:6] == ["frame", "seconds", "zoom", "angle", "tx", "ty"]
    assert {"steps", "step_size", "layers:block8", "layers:block12", *audio.NAMES} <= set(table)
    assert len(table["frame"]) == 12 * 24  # 12 s of clicks at 24 fps: no --frames, as long as the track
    figure = curves.write_curves(make_job(dict(command="zoom", noise=True, size="64x48", audio=str(click_wav[0]),
                                               zoom="1.01+0.04*onset",
                                               angle="2*sin(t/30)*smooth(loudness, 0.5)",
                                               layers="0:(block8), 100:(block12)", output=str(png))))
    shown = {line.get_gid(): line.get_ydata() for ax in figure.axes for line in ax.get_lines()}
    assert set(shown) == set(table) - {"frame", "seconds", "bpm"} - curves.constants(table).keys()
    for name, values in shown.items():
        np.testing.assert_array_equal(values, table[name], err_msg=name)
    height, width = iio.imread(png).shape[:2]
    panels = len(curves.panels(table))
    assert (width, height) == (1200, round(100 * (curves.MARGIN_IN + curves.PANEL_IN * panels)))

    code, err = run(capsys, "render", tmp_path / "none.toml", "-o", png)  # a job file that is not there
    assert code == 2
    job_file = tmp_path / "job.toml"
    job_file.write_text(f'command = "zoom"\nnoise = true\nsize = "64x48"\nframes = 48\naudio = "{click_wav[0]}"\n'
                        f'step_size = "0.01+0.02*beat"\n')
    code, err = run(capsys, "curves", job_file, "-o", tmp_path / "job.png")
    assert code == 0 and (tmp_path / "job.png").is_file()


@pytest.mark.parametrize("argv, message", [
    (["--export-schedules", "out.txt"], "must end in .csv"),
    (["--export-schedules", "{audio}"], "must end in .csv"),
    (["-o", "plot.gif"], "must end in .png or .svg or .pdf"),
])
def test_curves_checks_its_outputs(tmp_path, capsys, click_wav, argv, message):
    argv = [str(a).format(audio=click_wav[0]) for a in argv]
    code, err = run(capsys, "curves", "zoom", "--noise", "--audio", click_wav[0], "-o", tmp_path / "c.png", *argv)
    assert code == 2 and message in err and len(err.splitlines()) == 1


FUZZ = settings(max_examples=30, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
values = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-10 ** 6, 10 ** 6),
                   st.sampled_from(["nan", "-1", "1e300", "0.5"]))
expressions = st.one_of(
    st.text(alphabet="0123456789.+-*/() ,tonsetbaudmilrebpmh", max_size=30),
    st.builds(lambda name, a, b: f"smooth({name}, {a}, {b})", st.sampled_from([*audio.NAMES, "t", "x"]), values,
              values),
)


@pytest.fixture(scope="module")
def short_wav(tmp_path_factory):
    path = tmp_path_factory.mktemp("music") / "short.wav"
    clicks(path, seconds=2.0)
    return path


@FUZZ
@given(start=values, duration=values, expression=expressions)
def test_fuzzed_audio_settings_are_exit_0_or_2_on_one_line(tmp_path, capsys, short_wav, start, duration,
                                                           expression):
    code, err = run(capsys, "curves", "zoom", "--noise", "--size", "64x48", "--audio", short_wav,
                    f"--audio-start={start}", f"--audio-duration={duration}", f"--zoom=1+0.01*({expression})",
                    "-o", tmp_path / "c.png")
    assert code in (0, 2) and len(err.splitlines()) == 1, err
