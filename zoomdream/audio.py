"""Music as schedule variables: a track decoded through the bundled ffmpeg, reduced to one value per video frame.

Features, each one value per output frame and normalised over the analysed range of the track:

* ``loudness``: RMS level in dB, mapped linearly so the loudest frame is 1 and the quietest is 0 (a quietest
  frame more than 60 dB down counts as 60 dB down, so silence does not squash the music into the top).
* ``onset``: spectral flux on a log-mel spectrogram (40 mel bands, 30 Hz to 11 kHz): how much new sound
  starts in the frame (the largest flux inside it), divided by the track's largest.
* ``bass``, ``mid``, ``treble``: RMS amplitude of the bands 20-250 Hz, 250-4000 Hz and 4000-11025 Hz, each
  divided by its loudest frame's (0 is a silent band).
* ``beat``: 1 on the frame of each detected beat, decaying exponentially to 2% by the next beat; 0 before the
  first one.
* ``bpm``: the track's tempo, a constant (0 where no beat was found).

Inside schedule expressions, ``smooth(name, release)`` follows a feature up at once and lets it fall back with
a time constant of ``release`` seconds; ``smooth(name, attack, release)`` also slows the rise.

Decoding streams mono float32 PCM at 22,050 Hz from ffmpeg in chunks; the analysis keeps a few floats per 11.6
ms hop, so a one-hour track needs about 30 MB besides its features, never the samples themselves.
"""
from __future__ import annotations

import math
import os
import subprocess
import sys
import wave
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from pathlib import Path
from typing import ClassVar, Iterator

import numpy as np

from zoomdream.errors import ZoomdreamError
from zoomdream.media.ffmpeg import Ffmpeg, file_arg
from zoomdream.media.files import PathArg, existing_file, file_digest, show
from zoomdream.media.probe import read_header
from zoomdream.media.reader import _read_exact
from zoomdream.settings import number

RATE = 22050  # analysis sample rate: treble reaches 11 kHz
WINDOW = 1024  # 46 ms analysis window
HOP = 256  # 11.6 ms between analysis frames: every frame of an 86 fps video gets at least one
CHUNK = 1 << 16  # samples per read from ffmpeg
BANDS = {"bass": (20.0, 250.0), "mid": (250.0, 4000.0), "treble": (4000.0, RATE / 2)}
MEL_BANDS, MEL_RANGE = 40, (30.0, 11000.0)
LOUDNESS_RANGE_DB = 60.0
TEMPO_RANGE, TEMPO_PRIOR = (40.0, 240.0), 120.0  # BPM searched; the prior's centre (one octave wide)
BEAT_DECAY = 4.0  # beat = exp(-BEAT_DECAY * beats since the last one): 2% by the next beat
SERIES = ("loudness", "onset", "bass", "mid", "treble", "beat")  # one value per frame
NAMES = (*SERIES, "bpm")  # every name a schedule expression may read
MAX_SMOOTH_S = 60.0


# ---------------------------------------------------------------------------------------------------------
# Decoding
# ---------------------------------------------------------------------------------------------------------


def check_audio(path: PathArg) -> Path:
    """The path of a file ffmpeg reads that holds an audio stream, or a one-line error."""
    src, header = read_header(path, "read audio from")
    if header.audio_codec is None:
        raise ZoomdreamError(f"'{show(src)}' has no audio stream (give a file with sound: WAV, MP3, FLAC, OGG, "
                             f"M4A, or a video with a soundtrack)")
    return src


def decode(path: PathArg, *, start: float = 0.0, duration: float | None = None, rate: int = RATE,
           chunk: int = CHUNK) -> Iterator[np.ndarray]:
    """Mono float32 samples of ``path``'s first audio stream from ``start`` for ``duration`` seconds, resampled
    to ``rate`` by the bundled ffmpeg, yielded ``chunk`` samples at a time (the last chunk may be shorter)."""
    src = check_audio(path)
    args = ["-nostdin"]
    if start > 0:
        args += ["-ss", f"{start:.6f}"]
    if duration is not None:
        args += ["-t", f"{duration:.6f}"]
    args += ["-i", file_arg(src), "-map", "0:a:0", "-vn", "-sn", "-dn", "-ac", "1", "-ar", str(rate),
             "-f", "f32le", "pipe:1"]
    ff = Ffmpeg(args, stdout=subprocess.PIPE)
    try:
        while True:
            data = _read_exact(ff.proc.stdout, 4 * chunk)
            if len(data) >= 4:
                yield np.frombuffer(data[: len(data) // 4 * 4], np.float32)
            if len(data) < 4 * chunk:
                break
        if ff.wait() != 0:
            raise ZoomdreamError(f"cannot decode audio from '{show(src)}': ffmpeg said: {ff.tail()} (check that "
                                 f"the file is intact, or convert it to WAV)")
    finally:
        ff.kill()


def file_sha256(path: PathArg) -> str:
    """SHA-256 of a file's bytes, read 1 MB at a time (cached by path, size and modification time)."""
    p = existing_file(path, "read audio from")
    stat = p.stat()
    return _sha256(str(p.resolve()), stat.st_size, stat.st_mtime_ns)


@lru_cache(maxsize=16)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    try:
        return file_digest(path)
    except OSError as e:
        raise ZoomdreamError(f"cannot read audio from '{show(path)}': {e.strerror or e} (check permissions)") from None


def write_wav(path: PathArg, samples: np.ndarray, rate: int) -> None:
    """Samples in [-1, 1] (mono, or frames x channels) as a 16-bit PCM WAV file (tests, benchmarks, demos)."""
    pcm = np.clip(np.asarray(samples, np.float64), -1, 1)
    pcm = (pcm * 32767).round().astype("<i2")
    with wave.open(os.fspath(path), "wb") as w:
        w.setnchannels(1 if pcm.ndim == 1 else pcm.shape[1])
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())


# ---------------------------------------------------------------------------------------------------------
# Analysis: per hop, then per video frame
# ---------------------------------------------------------------------------------------------------------


def _mel_filters(rate: int, window: int) -> np.ndarray:
    """Triangular mel filters (HTK mel scale), MEL_BANDS x bins."""
    def mel(f):
        return 2595.0 * np.log10(1.0 + np.asarray(f) / 700.0)

    def hz(m):
        return 700.0 * (10.0 ** (np.asarray(m) / 2595.0) - 1.0)

    edges = hz(np.linspace(mel(MEL_RANGE[0]), mel(min(MEL_RANGE[1], rate / 2)), MEL_BANDS + 2))
    bins = np.fft.rfftfreq(window, 1.0 / rate)
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    return np.maximum(0.0, np.minimum((bins - lower) / (centre - lower), (upper - bins) / (upper - centre)))


class _Hops:
    """Streaming short-time analysis: per hop of HOP samples, the mean power, the three band powers and the
    spectral flux of the log-mel spectrum. Frames are centred (half a window of zeros before the first sample
    and after the last), as librosa does, so hop j is centred on sample j * HOP."""

    def __init__(self, rate: int = RATE):
        self.rate = rate
        self.window = np.hanning(WINDOW + 1)[:-1].astype(np.float32)
        self.mel = _mel_filters(rate, WINDOW).astype(np.float32)
        bins = np.fft.rfftfreq(WINDOW, 1.0 / rate)
        self.bands = np.stack([(bins >= lo) & (bins < hi if hi < rate / 2 else bins <= hi)
                               for lo, hi in BANDS.values()]).astype(np.float32)
        full_scale = (self.window.sum() / 2) ** 2  # a full-scale sine's peak bin power
        self.floor = np.float32(full_scale * 1e-6)  # log-mel soft floor, 60 dB under full scale
        self.buffer = np.zeros(WINDOW // 2, np.float32)
        self.samples = 0
        self.previous = None  # the last hop's log-mel spectrum
        self.parts: list[np.ndarray] = []  # rows: power, bass, mid, treble, flux

    def feed(self, samples: np.ndarray) -> None:
        self.samples += len(samples)
        self.buffer = np.concatenate([self.buffer, samples.astype(np.float32, copy=False)])
        count = (len(self.buffer) - WINDOW) // HOP + 1
        if count <= 0:
            return
        frames = np.lib.stride_tricks.sliding_window_view(self.buffer, WINDOW)[::HOP][:count]
        self._analyse(frames)
        self.buffer = self.buffer[count * HOP:].copy()

    def _analyse(self, frames: np.ndarray) -> None:
        power = np.einsum("ij,ij->i", frames, frames) / WINDOW
        spectrum = np.fft.rfft(frames * self.window, axis=1)
        spectrum = spectrum.real ** 2 + spectrum.imag ** 2
        spectrum = spectrum.astype(np.float32)
        bands = spectrum @ self.bands.T / (self.window.sum() ** 2 / 4)  # a band's power, a sine's mean square
        logmel = np.log1p(spectrum @ self.mel.T / self.floor)
        before = logmel[:1] if self.previous is None else self.previous[None]
        flux = np.maximum(np.diff(np.concatenate([before, logmel]), axis=0), 0).mean(axis=1)
        self.previous = logmel[-1]
        self.parts.append(np.column_stack([power, bands, flux]).astype(np.float32))

    def finish(self) -> np.ndarray:
        """Rows (hops) of power, bass, mid, treble, flux; the stream's end padded like its start."""
        self.feed(np.zeros(WINDOW // 2, np.float32))
        self.samples -= WINDOW // 2
        hops = self.samples // HOP + 1
        table = np.concatenate(self.parts) if self.parts else np.zeros((0, 5), np.float32)
        return table[:hops]


def _per_frame(times: np.ndarray, values: np.ndarray, fps: float, frames: int, how: str) -> np.ndarray:
    """Reduce values at ``times`` (seconds) to one per video frame [i/fps, (i+1)/fps): their mean or max; a
    frame no hop falls in (a very high frame rate) takes the value interpolated at its middle."""
    edges = np.searchsorted(times, np.arange(frames + 1) / fps, side="left")
    counts = np.diff(edges)
    middle = np.interp((np.arange(frames) + 0.5) / fps, times, values) if len(times) else np.zeros(frames)
    if how == "mean":
        total = np.concatenate([[0.0], np.cumsum(values, dtype=np.float64)])
        reduced = (total[edges[1:]] - total[edges[:-1]]) / np.maximum(counts, 1)
    else:
        starts = np.minimum(edges[:-1], max(len(values) - 1, 0))
        reduced = np.maximum.reduceat(values, starts) if len(values) else np.zeros(frames)
    return np.where(counts > 0, reduced, middle).astype(np.float64)


def _scaled(values: np.ndarray) -> np.ndarray:
    """Divided by the largest value (all zeros stay zeros)."""
    top = values.max(initial=0.0)
    return values / top if top > 0 else np.zeros_like(values)


def _loudness(power: np.ndarray) -> np.ndarray:
    db = 10.0 * np.log10(np.maximum(power, 1e-12))
    if not len(db):
        return db
    top = db.max()
    bottom = max(db.min(), top - LOUDNESS_RANGE_DB)
    return np.clip((db - bottom) / (top - bottom), 0.0, 1.0) if top > bottom else np.zeros_like(db)


def tempo(envelope: np.ndarray, rate: float) -> float:
    """The tempo in BPM of an onset envelope sampled at ``rate`` per second: the autocorrelation's comb over
    four beat periods, weighted by a log-normal prior around 120 BPM; 0 where nothing repeats."""
    e = envelope.astype(np.float64) - envelope.mean() if len(envelope) else envelope
    n = len(e)
    if n < 4 or not np.any(e):
        return 0.0
    spectrum = np.fft.rfft(e, 2 * n)
    ac = np.fft.irfft(spectrum.real ** 2 + spectrum.imag ** 2)[:n]
    bpms = np.arange(TEMPO_RANGE[0], TEMPO_RANGE[1] + 1e-9, 0.05)
    lags = 60.0 * rate / bpms
    score = np.zeros_like(bpms)
    for k in range(1, 5):
        reach = k * lags
        score += np.where(reach < n - 1, np.interp(reach, np.arange(n), ac), 0.0)
    score /= 4 * ac[0]
    if score.max() < 0.05:
        return 0.0
    prior = np.exp(-0.5 * np.log2(bpms / TEMPO_PRIOR) ** 2)
    return float(bpms[np.argmax(np.maximum(score, 0) * prior)])


def track_beats(envelope: np.ndarray, rate: float, bpm: float, tightness: float = 100.0) -> np.ndarray:
    """Indices of beats in an onset envelope (Ellis 2007 dynamic programming, as in librosa): each beat
    scores its onset strength plus the best earlier beat's score, less a penalty for straying from the
    tempo's period."""
    if bpm <= 0 or not np.any(envelope > 0):
        return np.zeros(0, int)
    period = 60.0 * rate / bpm
    local = envelope / envelope.std()
    width = max(1, round(period / 32))
    kernel = np.exp(-0.5 * (np.arange(-width * 4, width * 4 + 1) / width) ** 2)
    local = np.convolve(local, kernel / kernel.sum(), mode="same")
    offsets = np.arange(-round(2 * period), -round(period / 2) + 1)
    penalty = -tightness * np.log(-offsets / period) ** 2
    score = local.copy()
    back = np.full(len(local), -1)
    begin = int(np.argmax(local > 0.01 * local.max()))  # the first onset worth a beat: none chain from before it
    for t in range(begin, len(local)):
        lo, hi = t + offsets[0], t + offsets[-1]
        if hi < begin:
            continue
        first = max(lo, begin) - lo
        candidates = score[lo + first: hi + 1] + penalty[first:]
        best = int(np.argmax(candidates))
        score[t] = local[t] + candidates[best]
        back[t] = lo + first + best
    tail = score[-int(round(period)):]  # the last beat: the best score in the final period
    last = len(score) - len(tail) + int(np.argmax(tail))
    beats = [last]
    while back[beats[-1]] >= 0:
        beats.append(back[beats[-1]])
    beats = np.array(beats[::-1])
    strong = local[beats] > 0.5 * np.sqrt(np.mean(local ** 2))  # trim weak beats at either end
    if not strong.any():
        return np.zeros(0, int)
    keep = np.flatnonzero(strong)
    return beats[keep[0]: keep[-1] + 1]


@dataclass(frozen=True)
class Features:
    """A track's features at a frame rate: ``series[name]`` holds one value per frame for each of SERIES."""

    fps: float
    duration: float  # seconds analysed
    bpm: float
    beats: np.ndarray  # beat times in seconds
    series: dict
    _smoothed: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def frames(self) -> int:
        """round(duration x fps): the frame count of a zoom as long as the track."""
        return round(self.duration * self.fps)

    def value(self, name: str, t: int) -> float:
        """A feature at frame t (``bpm``: the tempo); past the track's end, silence: 0."""
        if name == "bpm":
            return self.bpm
        values = self.series[name]
        return float(values[t]) if 0 <= t < len(values) else 0.0

    def column(self, name: str, frames: int) -> np.ndarray:
        """The values of frames 0 .. frames - 1, as ``value`` gives them."""
        if name == "bpm":
            return np.full(frames, self.bpm)
        out = np.zeros(frames)
        kept = min(frames, len(self.series[name]))
        out[:kept] = self.series[name][:kept]
        return out

    def smoothed(self, name: str, t: int, attack: float, release: float) -> float:
        """The feature through an envelope follower: rising with time constant ``attack`` seconds, falling with
        ``release`` (0: at once)."""
        key = (name, attack, release)
        if key not in self._smoothed:
            self._smoothed[key] = follow(self.series[name], self.fps, attack, release)
        values = self._smoothed[key]
        return float(values[t]) if 0 <= t < len(values) else 0.0


def follow(values: np.ndarray, fps: float, attack: float, release: float) -> np.ndarray:
    """One-pole envelope follower: each frame moves toward the input by 1 - exp(-1 / (seconds x fps)), with
    the attack's time constant when rising and the release's when falling (0 seconds: at once)."""
    def step(seconds):
        return 1.0 if seconds <= 0 else 1.0 - math.exp(-1.0 / (seconds * fps))

    up, down = step(attack), step(release)
    out = np.empty(len(values))
    level = 0.0
    for i, x in enumerate(values.tolist()):
        rate = up if x > level else down
        # A rate of 1 sets the level: level + 1.0 * (x - level) can differ from x in the last bit.
        level = x if rate == 1.0 else level + rate * (x - level)
        out[i] = level
    return out


def analyse(path: PathArg, fps: float, *, start: float = 0.0, duration: float | None = None,
            chunk: int = CHUNK) -> Features:
    """Decode ``path`` (from ``start`` for ``duration`` seconds) and reduce it to features at ``fps``; cached by
    file, modification time, range and rate, since every piece of a render resolves the same job."""
    p = existing_file(path, "read audio from")
    stat = p.stat()
    return _analyse(str(p.resolve()), stat.st_size, stat.st_mtime_ns, float(fps), float(start),
                    None if duration is None else float(duration), chunk)


@lru_cache(maxsize=4)
def _analyse(path: str, size: int, mtime_ns: int, fps: float, start: float, duration: float | None,
             chunk: int) -> Features:
    hops = _Hops()
    for samples in decode(path, start=start, duration=duration, chunk=chunk):
        hops.feed(samples)
    table = hops.finish()
    seconds = hops.samples / RATE
    if hops.samples == 0:
        raise ZoomdreamError(f"'{show(path)}' has no audio from {start:g} s on (check --audio-start and the file)")
    frames = max(1, math.ceil(seconds * fps - 1e-9))
    centres = np.arange(len(table)) * HOP / RATE
    # New sound shows first where it enters a window: date the flux to the window's leading edge.
    entered = centres + WINDOW / 2 / RATE
    power, bass, mid, treble, flux = table.T
    hop_rate = RATE / HOP
    bpm = tempo(flux, hop_rate)
    beat_times = entered[track_beats(flux, hop_rate, bpm)]
    series = {
        "loudness": _loudness(_per_frame(centres, power, fps, frames, "mean")),
        "onset": _scaled(_per_frame(entered, flux, fps, frames, "max")),
        **{name: _scaled(np.sqrt(_per_frame(centres, band, fps, frames, "mean")))
           for name, band in zip(BANDS, (bass, mid, treble))},
        "beat": beat_curve(beat_times, bpm, fps, frames),
    }
    for values in series.values():
        values.setflags(write=False)
    return Features(fps=fps, duration=seconds, bpm=bpm, beats=beat_times, series=series)


def beat_curve(beat_times: np.ndarray, bpm: float, fps: float, frames: int) -> np.ndarray:
    """1 on each beat's frame, decaying by exp(-BEAT_DECAY) per beat period; 0 before the first beat."""
    curve = np.zeros(frames)
    if not len(beat_times) or bpm <= 0:
        return curve
    beat_frames = np.floor(beat_times * fps + 1e-9).astype(int)
    index = np.arange(frames)
    last = np.searchsorted(beat_frames, index, side="right") - 1
    since = index - beat_frames[np.maximum(last, 0)]
    period = fps * 60.0 / bpm
    return np.where(last >= 0, np.exp(-BEAT_DECAY * since / period), 0.0)


# ---------------------------------------------------------------------------------------------------------
# A render's track
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Track:
    """The audio of a render: a range of a file, the frame rate its features are read at, and the file's
    SHA-256 where the job records it. Analysed on first use, so a video whose schedules never read the music
    never decodes it. Schedules read it by name (``names``, ``value``, ``smoothed``)."""

    path: Path
    start: float
    duration: float | None
    fps: float
    sha256: str | None = None
    names: ClassVar[tuple] = NAMES  # what schedules may read
    series_names: ClassVar[tuple] = SERIES  # what smooth() may take

    @cached_property
    def features(self) -> Features:
        return analyse(self.path, self.fps, start=self.start, duration=self.duration)

    def value(self, name: str, t: int) -> float:
        return self.features.value(name, t)

    def smoothed(self, name: str, t: int, attack: float, release: float) -> float:
        return self.features.smoothed(name, t, attack, release)

    def writer_options(self) -> dict:
        """What the encoder needs to mux this range into the output (cut there to the video's length)."""
        return dict(audio_from=self.path, audio_start=self.start, audio_duration=self.duration)


def resolve_track(job, fps: float, clip: tuple[Path, float, float | None] | None = None) -> Track | None:
    """A zoom or video job's track: ``--audio FILE`` from ``--audio-start`` for ``--audio-duration`` (its
    SHA-256 taken, and checked against one a saved job recorded), else ``clip`` (a video's own soundtrack:
    path, start, duration), else None."""
    start = number(job.audio_start, "audio_start", low=0)
    duration = None if job.audio_duration is None else number(job.audio_duration, "audio_duration", above=0)
    if not job.audio:
        if start or duration is not None or job.audio_sha256:
            raise ZoomdreamError("--audio-start, --audio-duration and --audio-sha256 describe an --audio FILE "
                                 "(give one, or leave them out)")
        return None if clip is None else Track(Path(clip[0]), clip[1], clip[2], fps)
    path = check_audio(job.audio)
    if job.output and Path(job.output).suffix.lower() == ".gif":
        print("zoomdream: note: a GIF has no sound: --audio drives the schedules only", file=sys.stderr)
    sha = file_sha256(path)
    if job.audio_sha256 and job.audio_sha256 != sha:
        raise ZoomdreamError(f"--audio '{show(path)}' is not the track this job was made with (its SHA-256 is "
                             f"{sha[:12]}..., the job's {str(job.audio_sha256)[:12]}...; give the original file, "
                             f"or drop audio_sha256 from the job to accept this one)")
    return Track(path, start, duration, fps, sha)


def frame_count(frames: int | None, track: Track | None, default: int) -> int:
    """A zoom's frame count: ``--frames``, else as long as the track (round(duration x fps)), else ``default``."""
    if frames is not None:
        return frames
    if track is None:
        return default
    if track.features.frames < 1:
        raise ZoomdreamError(f"--audio '{show(track.path)}' lasts {track.features.duration:.3f} s, under one frame "
                             f"(give a longer track, or --frames)")
    return track.features.frames


def pins(track: Track | None) -> dict:
    """The job values a track decides, for the saved job: its SHA-256 (an --audio file's)."""
    return {"audio_sha256": track.sha256} if track is not None and track.sha256 else {}
