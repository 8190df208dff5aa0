"""The per-frame features of a track (loudness, onset, bands, beat, bpm), computed hop by hop from the
decoded chunks, and ``follow`` (the ``smooth()`` of schedule expressions).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from zoomdream.errors import ZoomdreamError
from zoomdream.media.files import PathArg, existing_file, show
from zoomdream.audio.decode import CHUNK, RATE, decode


WINDOW = 1024  # 46 ms analysis window


HOP = 256  # 11.6 ms between analysis frames: every frame of an 86 fps video gets at least one


BANDS = {"bass": (20.0, 250.0), "mid": (250.0, 4000.0), "treble": (4000.0, RATE / 2)}


MEL_BANDS, MEL_RANGE = 40, (30.0, 11000.0)


LOUDNESS_RANGE_DB = 60.0


TEMPO_RANGE, TEMPO_PRIOR = (40.0, 240.0), 120.0  # BPM searched; the prior's centre (one octave wide)


BEAT_DECAY = 4.0  # beat = exp(-BEAT_DECAY * beats since the last one): 2% by the next beat


SERIES = ("loudness", "onset", "bass", "mid", "treble", "beat")  # one value per frame


NAMES = (*SERIES, "bpm")  # every name a schedule expression may read


MAX_SMOOTH_S = 60.0


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
