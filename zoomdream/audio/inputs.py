"""The music of `zoomdream live --audio`: a microphone (``mic``, through sounddevice, the optional extra
``live``), the source's own audio track (``source``, read by the same ffmpeg as its video), or a file played in
real time from the first source frame. Each feeds a ``LiveAnalyser``; schedules read ``LiveAudio.snapshot``.
"""
from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np

from zoomdream.audio.decode import RATE, check_audio, decode
from zoomdream.audio.features import HOP
from zoomdream.audio.live import LiveAnalyser
from zoomdream.errors import ZoomdreamError, one_line
from zoomdream.media.files import show
from zoomdream.media.probe import read_header

MIC, SOURCE = "mic", "source"
NO_SOUND = "(drop --audio source, or give --audio mic or --audio FILE)"


def check_live_audio(value: str | None, kind: str, source: str | None) -> str | None:
    """``--audio`` of a live job, checked without opening anything (``--check`` needs no microphone): ``mic``,
    ``source`` (a file source must hold an audio track; a camera, an image or --noise has none) or the path of
    a file with sound."""
    if not value:
        return None
    if value == MIC:
        return MIC
    if value == SOURCE:
        if kind in ("camera", "image", "noise"):
            what = {"camera": "a camera", "image": "an image", "noise": "--noise"}[kind]
            raise ZoomdreamError(f"--audio source: {what} has no audio track {NO_SOUND}")
        if kind == "file" and read_header(source, "read")[1].audio_codec is None:
            raise ZoomdreamError(f"--audio source: '{show(source)}' has no audio track {NO_SOUND}")
        return SOURCE
    return str(check_audio(value))


class LiveAudio:
    """A live input's analyser, as the live controls read it. ``stamp`` (the source's track): the stream time
    of the frame taken last, so a frame never reads audio from after it even where ffmpeg hands the audio over
    before the video; else the newest audio counts."""

    def __init__(self, analyser: LiveAnalyser, stamp=None):
        self.analyser, self.stamp = analyser, stamp

    def snapshot(self) -> dict[str, float]:
        return self.analyser.snapshot(until=self.stamp() if self.stamp is not None else None)

    def start(self, at: float) -> None:
        """The first source frame arrived at ``time.monotonic()`` ``at`` (a file starts playing then)."""

    def close(self) -> None:
        pass


class Microphone(LiveAudio):
    """The default input device through sounddevice, opened at once (a missing one fails before the model
    loads), in blocks of about one analysis hop, mono at the analysis rate; a device that refuses that rate
    (a sound card's own ALSA device) is read at its own and resampled."""

    def __init__(self, analyser: LiveAnalyser):
        super().__init__(analyser)
        sd = _sounddevice()
        self.resample = None
        try:
            try:
                self.stream = self._open(sd, RATE)
            except sd.PortAudioError as error:
                if "sample rate" not in str(error).lower():
                    raise
                rate = float(sd.query_devices(kind="input")["default_samplerate"])
                self.resample = Resample(rate, RATE)
                self.stream = self._open(sd, rate)
            self.stream.start()
        except (sd.PortAudioError, ValueError) as error:
            raise ZoomdreamError(f"cannot open the microphone: {one_line(str(error))} (check that one is plugged "
                                 f"in and this user may use it, or give --audio FILE)") from None

    def _open(self, sd, rate: float):
        return sd.InputStream(samplerate=rate, channels=1, dtype="float32", blocksize=round(HOP * rate / RATE),
                              latency="low", callback=self._heard)

    def _heard(self, samples, frames, when, status) -> None:
        mono = samples[:, 0]
        self.analyser.feed(mono if self.resample is None else self.resample(mono))

    def close(self) -> None:
        self.stream.stop()
        self.stream.close()


class Resample:
    """A stream of blocks from one sample rate to another by linear interpolation, continuous across blocks
    (enough for features: what aliases from above 11 kHz lands in the treble band)."""

    def __init__(self, source: float, target: float):
        self.step = source / target  # input samples per output sample
        self.at = 1.0  # where the next output sample falls, counted from the held sample (none yet: 0)
        self.held = np.zeros(1, np.float32)  # the last sample of the block before

    def __call__(self, block: np.ndarray) -> np.ndarray:
        buffer = np.concatenate([self.held, np.asarray(block, np.float32)])
        count = max(0, int(np.floor((len(buffer) - 1 - self.at) / self.step)) + 1)
        out = np.interp(self.at + np.arange(count) * self.step, np.arange(len(buffer)), buffer)
        self.at += count * self.step - (len(buffer) - 1)
        self.held = buffer[-1:]
        return out.astype(np.float32)


def _sounddevice():
    """sounddevice (the optional extra ``live``), imported only when a microphone is asked for."""
    try:
        import sounddevice
    except ImportError:
        raise ZoomdreamError("--audio mic needs sounddevice (pip install 'zoomdream[live]')") from None
    except OSError:  # the module is there, its PortAudio library is not
        raise ZoomdreamError("--audio mic needs the PortAudio library (Debian/Ubuntu: sudo apt install "
                             "libportaudio2; macOS and Windows: pip install --force-reinstall sounddevice)") from None
    return sounddevice


class FilePlayer(LiveAudio):
    """A file fed to the analyser in real time from ``start``, one hop at a time, each when its last sample
    is due, as if it were playing in the room."""

    def __init__(self, path: str | Path, analyser: LiveAnalyser):
        super().__init__(analyser)
        self.path, self.at = path, 0.0
        self.began, self.closing = threading.Event(), threading.Event()
        self.thread = threading.Thread(target=self._play, name="zoomdream-audio-file", daemon=True)
        self.thread.start()

    def start(self, at: float) -> None:
        self.at = at
        self.began.set()

    def _play(self) -> None:
        while not self.began.wait(0.1):
            if self.closing.is_set():
                return
        fed = 0
        try:
            for chunk in decode(self.path, chunk=HOP * 64):
                for block in (chunk[i:i + HOP] for i in range(0, len(chunk), HOP)):
                    if self.closing.wait(max(0.0, self.at + (fed + len(block)) / RATE - time.monotonic())):
                        return
                    self.analyser.feed(block)
                    fed += len(block)
        except ZoomdreamError:  # checked before it started: a file changed under it just falls silent
            return

    def close(self) -> None:
        self.closing.set()
        self.thread.join(timeout=5)


def open_live_audio(value: str | None, analyser: LiveAnalyser | None, reader=None) -> LiveAudio | None:
    """The live input ``check_live_audio`` named, feeding ``analyser``; ``source``: the reader (a
    ``stream.NewestFrames``) was built with the analyser, and gives each frame's stream time."""
    if not value:
        return None
    if value == MIC:
        return Microphone(analyser)
    if value == SOURCE:
        return LiveAudio(analyser, stamp=lambda: reader.taken_stamp)
    return FilePlayer(value, analyser)
