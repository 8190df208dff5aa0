"""The room's music in `zoomdream live`: the causal analyser fed as a microphone (a test double of sounddevice's
input stream calling the real callback), the source's own audio track read by the same ffmpeg, a file played in
real time, and bad --audio values. Waits are for events (audio fed, frames taken), never fixed sleeps."""
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np
import pytest

from conftest import wait_for
from test_audio import clicks
from zoomdream.audio import NAMES, RATE, analyse, decode, write_wav
from zoomdream.audio.features import HOP
from zoomdream.audio.inputs import FilePlayer, LiveAudio, Microphone
from zoomdream.audio.live import LiveAnalyser
from zoomdream.cli import main as cli_main
from zoomdream.media import stream
from zoomdream.media.ffmpeg import ffmpeg_exe

ONSET_S = 1.0  # when the burst of ``burst_wav`` starts


def burst(seconds: float = 2.0, at: tuple = (ONSET_S,)) -> np.ndarray:
    """A quiet 220 Hz hum with a loud decaying noise burst at each time of ``at``."""
    t = np.arange(int(seconds * RATE)) / RATE
    x = 0.05 * np.sin(2 * np.pi * 220 * t)
    for when in at:
        i = int(when * RATE)
        x[i:i + 2000] += 0.8 * np.random.default_rng(0).standard_normal(2000) * np.exp(-np.arange(2000) / 400)
    return x.astype(np.float32)


class FakeSounddevice(types.ModuleType):
    """sounddevice as far as ``Microphone`` uses it: ``play`` hands the stream's real callback one block at a
    time, as PortAudio would."""

    class PortAudioError(Exception):
        pass

    def __init__(self, refuse: str | None = None, rate: float | None = None):
        super().__init__("sounddevice")
        self.refuse, self.rate, self.streams = refuse, rate, []  # rate: the only one the device takes
        fake = self

        class InputStream:
            def __init__(self, *, samplerate, channels, dtype, blocksize, latency, callback):
                if fake.refuse:
                    raise fake.PortAudioError(fake.refuse)
                if fake.rate and samplerate != fake.rate:
                    raise fake.PortAudioError("Error opening InputStream: Invalid sample rate [PaErrorCode -9997]")
                self.settings, self.callback = (samplerate, channels, dtype, blocksize), callback
                self.started = self.closed = False
                fake.streams.append(self)

            def start(self):
                self.started = True

            def stop(self):
                self.started = False

            def close(self):
                self.closed = True

            def play(self, samples: np.ndarray):
                for i in range(0, len(samples), self.settings[3]):
                    block = samples[i:i + self.settings[3], None]
                    self.callback(block, len(block), None, None)
                    yield i + len(block)

        self.InputStream = InputStream

    def query_devices(self, kind):
        return {"default_samplerate": self.rate or 44100.0}


@pytest.fixture
def microphone(monkeypatch):
    fake = FakeSounddevice()
    monkeypatch.setitem(sys.modules, "sounddevice", fake)
    return fake


def test_a_wav_fed_as_the_microphone_shows_its_onset_after_it_never_before(microphone):
    mic = Microphone(LiveAnalyser(fps=24))
    stream_ = microphone.streams[0]
    assert stream_.started and stream_.settings == (RATE, 1, "float32", HOP)
    seen = []  # (seconds of audio heard, onset) at each block: a frame could be taken at any of them
    for heard in stream_.play(burst()):
        seen.append((heard / RATE, mic.snapshot()["onset"]))
    mic.close()
    assert stream_.closed
    before = [onset for when, onset in seen if 0.5 <= when < ONSET_S]
    assert max(before) < 0.05, max(before)  # the hum alone: nothing new
    first = next(when for when, onset in seen if when >= 0.5 and onset > 0.5)
    assert ONSET_S <= first <= ONSET_S + 0.05, first  # after it, within the 50 ms the analysis may add


def test_a_device_that_refuses_the_analysis_rate_is_read_at_its_own(monkeypatch):
    monkeypatch.setitem(sys.modules, "sounddevice", FakeSounddevice(rate=48000.0))
    mic = Microphone(LiveAnalyser(fps=24))
    stream_ = sys.modules["sounddevice"].streams[0]
    assert stream_.settings[0] == 48000.0 and stream_.settings[3] == 557  # about a hop's time
    def sound(rate):
        t = np.arange(2 * int(rate)) / rate
        return (0.5 * np.sin(2 * np.pi * 100 * t) * (t < 1) + 0.3 * np.sin(2 * np.pi * 1000 * t)
                + 0.2 * np.sin(2 * np.pi * 6000 * t)).astype(np.float32)

    for heard in stream_.play(sound(48000)):
        pass
    direct = LiveAnalyser(fps=24)
    direct.feed(sound(RATE))
    assert mic.analyser.now == pytest.approx(2.0, abs=1e-3)
    heard = mic.snapshot()
    for name, value in direct.snapshot().items():
        assert heard[name] == pytest.approx(value, abs=0.02), name


def test_a_schedule_reads_the_snapshot_of_its_frame(microphone):
    from zoomdream.schedules import parse_schedule

    class Frames:  # the variables a live schedule reads: each frame's snapshot, as taken
        names, series_names = NAMES, ()

        def __init__(self):
            self.frames = {}

        def value(self, name, t):
            return self.frames[t][name]

    mic, frames = Microphone(LiveAnalyser(fps=24)), Frames()
    step_size = parse_schedule("0.01 + 0.02*onset", name="--step-size", variables=frames)
    made = []  # (the frame's time, its step size): a frame every 1/24 s of audio
    for heard in microphone.streams[0].play(burst()):
        if heard * 24 // RATE > len(made):
            frames.frames[len(made)] = mic.snapshot()
            made.append((heard / RATE, step_size.at(len(made))))
    strong = [when for when, value in made if when >= 0.5 and value > 0.02]
    assert strong and ONSET_S <= strong[0] < ONSET_S + 1 / 24 + 0.05, made
    assert all(value == pytest.approx(0.01, abs=1e-3) for when, value in made if 0.5 <= when < ONSET_S)


def test_frames_slower_than_fps_miss_no_onset():
    x = burst(3.0, (0.9, 1.73, 2.61))
    analyser, shown = LiveAnalyser(fps=24), []
    for i in range(0, len(x), RATE // 5):  # a frame every 0.2 s, a fifth of the rate the analyser expects
        analyser.feed(x[i:i + RATE // 5])
        shown.append((analyser.now, analyser.snapshot()["onset"] > 0.5))
    assert [when for when, onset in shown if onset and when > 0.5] == [1.0, 1.8, 2.8]  # each in the next frame


def test_snapshot_agrees_with_the_offline_features_once_the_extremes_were_heard(tmp_path):
    t = np.arange(RATE) / RATE

    def tones(*parts):
        return sum(a * np.sin(2 * np.pi * f * t) for f, a in parts)

    x = np.concatenate([tones((1000, 0.05)), tones((100, 0.5), (1000, 0.3), (6000, 0.2)),  # quietest, loudest
                        tones((100, 0.25), (1000, 0.3)), tones((6000, 0.1), (100, 0.1))])
    write_wav(tmp_path / "bands.wav", x, RATE)
    offline = analyse(tmp_path / "bands.wav", 24)
    analyser = LiveAnalyser(fps=24)
    for at in (2.5, 3.5):  # the middle of the third and fourth second
        analyser.feed(x[analyser.fed:int((at + 1 / 24) * RATE)])  # up to the end of the frame at ``at``
        live = analyser.snapshot()
        frame = round(at * 24)
        for name in ("loudness", "bass", "mid", "treble"):
            assert live[name] == pytest.approx(offline.series[name][frame], abs=0.05), (at, name)
    assert set(live) == set(NAMES)


def test_tempo_and_beat_come_from_the_recent_past(tmp_path):
    times = clicks(tmp_path / "clicks.wav", bpm=120, seconds=8, offset=0.25, rate=RATE)
    x = np.concatenate(list(decode(tmp_path / "clicks.wav")))
    analyser = LiveAnalyser(fps=24)
    beats = []
    for i in range(0, len(x), HOP):
        analyser.feed(x[i:i + HOP])
        snap = analyser.snapshot()
        if snap["beat"] > 0.95:
            beats.append(analyser.now)
    assert snap["bpm"] == pytest.approx(120, rel=0.02)
    late = [c for c in times if c > 4]  # once the tempo is known, each click is a beat within 30 ms after it
    assert all(any(0 <= b - c <= 0.03 for b in beats) for c in late), (late, beats)
    assert all(any(0 <= b - c <= 0.03 for c in times) for b in beats if b > 4)


def test_source_audio_is_read_with_its_video_and_never_ahead_of_its_frame(tmp_path):
    clip = tmp_path / "flash.mkv"  # white from 1.0 s, a 1 kHz tone from 1.0 s after silence; PCM, unsmeared
    subprocess.run([ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i", "color=c=black:s=64x48:r=25:d=2,drawbox="
                    "c=white:t=fill:enable='gte(t,1)'", "-f", "lavfi", "-i", "aevalsrc='0.5*gte(t,1)*sin(2*PI*1000*t)'"
                    ":s=22050:d=2", "-c:v", "mjpeg", "-c:a", "pcm_s16le", str(clip)], check=True)
    analyser = LiveAnalyser(fps=25)
    reader = stream.NewestFrames(str(clip), (64, 48), reconnect=False, audio=analyser).start()
    audio = LiveAudio(analyser, stamp=lambda: reader.taken_stamp)
    taken = []  # (the frame's stream time, whether it is white, its mid) for every frame taken
    try:
        while not reader.ended:
            frame = reader.take(0.5)
            if frame is not None:
                taken.append((reader.taken_stamp, frame.mean() > 128, audio.snapshot()["mid"]))
    finally:
        reader.close()
    assert reader.error is None and analyser.now > 1.9  # the whole track came through the same ffmpeg
    stamps = [s for s, _, _ in taken]
    assert stamps == sorted(stamps) and stamps[-1] == pytest.approx(1.96)
    assert [s for s, white, _ in taken if white][0] == pytest.approx(1.0)  # the stamps are the video's own times
    assert all(mid < 0.05 for s, _, mid in taken if s <= 1.0), taken  # never the tone before its frame
    assert all(mid > 0.9 for s, _, mid in taken if s >= 1.1), taken  # and every frame from 1.1 s hears it


def test_the_clips_own_sound_drives_the_features(tmp_path):
    clip = Path(__file__).parent / "data" / "big_buck_bunny_432_433.webm"  # the clip of tests/data with sound
    analyser = LiveAnalyser(fps=24)
    reader = stream.NewestFrames(str(clip), (64, 36), reconnect=False, audio=analyser).start()
    loudness = []
    try:
        while not reader.ended:
            if reader.take(0.5) is not None:
                loudness.append(analyser.snapshot(until=reader.taken_stamp)["loudness"])
    finally:
        reader.close()
    assert analyser.now == pytest.approx(1.0, abs=0.05) and max(loudness) > 0.5


def test_a_file_plays_in_real_time_from_the_first_frame(tmp_path):
    write_wav(tmp_path / "burst.wav", burst(), RATE)
    analyser = LiveAnalyser(fps=24)
    player = FilePlayer(tmp_path / "burst.wav", analyser)
    try:
        assert analyser.fed == 0  # nothing plays before the first frame
        began = time.monotonic()
        player.start(began)
        checks = []

        def due() -> bool:  # never fed before its time
            checks.append(analyser.now - (time.monotonic() - began))
            return analyser.now >= 0.3

        wait_for(due, 10, "a third of a second played")
        assert max(checks) <= 1e-3 and len(checks) > 5, max(checks)
    finally:
        player.close()


def run(capsys, monkeypatch, *argv):
    import zoomdream.models

    monkeypatch.setattr(zoomdream.models, "load_model", lambda *a, **k: pytest.fail("the model loaded"))
    rc = cli_main(["live", *argv])
    return rc, capsys.readouterr().err


@pytest.mark.parametrize("argv,message", [
    (["samples/chelsea.png", "--audio", "source", "--check"], "--audio source: an image has no audio track"),
    (["tests/data/example.mp4", "--audio", "source", "--check"],
     "--audio source: 'tests/data/example.mp4' has no audio track (drop --audio source, or give --audio mic"),
    (["/dev/video0", "--audio", "source", "--check"], "--audio source: a camera has no audio track"),
    (["--noise", "--audio", "source", "--check"], "--audio source: --noise has no audio track"),
    (["samples/chelsea.png", "--audio", "nosuch.wav", "--check"], "cannot read audio from 'nosuch.wav': file not"),
    (["samples/chelsea.png", "--audio", "tests/data/example.mp4", "--check"], "has no audio stream"),
])
def test_bad_audio_is_one_line_and_exit_2_before_the_model_loads(argv, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(Path(__file__).parents[1])
    rc, err = run(capsys, monkeypatch, *argv, "-o", str(tmp_path / "x.mp4"))
    assert rc == 2 and err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "x.mp4").exists()


@pytest.mark.parametrize("fake,message", [
    (None, "--audio mic needs sounddevice (pip install 'zoomdream[live]')"),
    (FakeSounddevice(refuse="Error querying device -1"),
     "cannot open the microphone: Error querying device -1 (check that one is plugged in"),
])
def test_a_missing_microphone_is_one_line_before_the_model_loads(fake, message, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "sounddevice", fake)  # None: not installed
    monkeypatch.chdir(Path(__file__).parents[1])
    assert run(capsys, monkeypatch, "samples/chelsea.png", "--audio", "mic", "-o", str(tmp_path / "x.mp4"),
               "--check")[0] == 0  # --check opens no microphone
    rc, err = run(capsys, monkeypatch, "samples/chelsea.png", "--audio", "mic", "-o", str(tmp_path / "x.mp4"))
    assert rc == 2 and err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "x.mp4").exists()


def played(monkeypatch) -> tuple[list, list]:
    """Spies on a live run: each frame's (when its source frame was taken, its step size, its music), and when
    an --audio FILE started playing."""
    from zoomdream.live.controls import Controls

    frames, began, look, start = [], [], Controls.look, FilePlayer.start

    def spy(self, t, when=None):
        made = look(self, t, when)
        frames.append((when, made.dream.step_size, self.variables.frames[t][1]))
        return made

    monkeypatch.setattr(Controls, "look", spy)
    monkeypatch.setattr(FilePlayer, "start", lambda self, at: (began.append(at), start(self, at)))
    return frames, began


def live_job(source, **settings):
    from zoomdream.config import make_job

    return make_job({"command": "live", "input": source, "size": "64x48", "steps": 1, "fps": 24, **settings})


def test_a_file_drives_the_live_schedules_from_the_first_frame_never_ahead(lite0, tmp_path, monkeypatch):
    from zoomdream import live

    t = np.arange(2 * RATE) / RATE
    write_wav(tmp_path / "step.wav", 0.5 * np.sin(2 * np.pi * 1000 * t) * (t >= ONSET_S), RATE)  # a tone from 1 s
    frames, began = played(monkeypatch)
    job = live_job(str(Path(__file__).parents[1] / "samples" / "chelsea.png"), seconds=1.6,
                   audio=str(tmp_path / "step.wav"), step_size="0.01 + 0.02*mid")
    assert live.main(job, [str(tmp_path / "out.mkv")], model=lite0, status=live.Status(open("/dev/null", "w"))) == 0
    assert len(began) == 1 and frames[0][0] <= began[0] < frames[1][0]  # it played from the first frame
    quiet = [size for when, size, _ in frames if when - began[0] < ONSET_S]
    loud = [size for when, size, _ in frames if when - began[0] > ONSET_S + 0.15]
    assert quiet and loud, frames
    assert all(size == pytest.approx(0.01) for size in quiet)  # no frame before the tone hears it
    assert all(size == pytest.approx(0.03, abs=1e-3) for size in loud)  # every frame after it does


def test_the_source_track_drives_the_live_schedules(lite0, tmp_path, monkeypatch):
    from zoomdream import live

    frames, _ = played(monkeypatch)
    clip = Path(__file__).parent / "data" / "big_buck_bunny_432_433.webm"  # the clip of tests/data with sound
    job = live_job(str(clip), frames=6, audio="source", step_size="0.01 + 0.02*loudness")
    assert live.main(job, [str(tmp_path / "out.mkv")], model=lite0, status=live.Status(open("/dev/null", "w"))) == 0
    assert len(frames) == 6
    assert max(size for _, size, _ in frames) > 0.02  # the clip's sound reached the step size
    assert all(set(music) == set(NAMES) for _, _, music in frames)


def test_a_stream_without_sound_is_one_line_before_the_model_loads(tmp_path, capsys, monkeypatch):
    from test_live import free_port, sender, stop

    port = free_port()
    video_only = sender(port)  # H.264 in MPEG-TS, no audio
    try:
        rc, err = run(capsys, monkeypatch, f"udp://127.0.0.1:{port}", "--audio", "source", "-o",
                      str(tmp_path / "x.mp4"), "--size", "64x48")
    finally:
        stop(video_only)
    assert rc == 2 and err.count("\n") == 1, err
    assert f"'udp://127.0.0.1:{port}' has no audio track (drop --audio source, or give --audio mic" in err
    assert not (tmp_path / "x.mp4").exists()
