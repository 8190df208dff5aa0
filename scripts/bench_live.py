"""Glass-to-glass figures of `zoomdream live`: a real local stream in, the live loop, a stream out read back.

A source whose every frame carries its own index as a barcode (two rows of 16 black and white blocks, the
second the inverse of the first, so a block the dream or H.264 blurred past recognition is seen as such) is
sent in real time as H.264 in MPEG-TS to udp://127.0.0.1:PORT; `zoomdream live` dreams it into another UDP
stream; a reader decodes that stream and reads each frame's index back: the time between sending frame k
and receiving its dream is the latency. Prints per case ``fps=`` (distinct dreamed frames received a
second), ``dropped=`` (source frames the loop skipped, being busy), ``latency_p50=``, ``latency_p95=`` and
the loop's own seconds per frame against the dream's, and last ``live_fps=`` (the real model at 256x144).

Cases: the real default model on this CPU at 256x144 and 426x240, and a simulated accelerator at 1280x720
(a dreamer that sleeps for a GPU's dream time and uses no CPU: bench_pipeline.py's 0.03 s, the H200's zoom
dream at 1280x720). ``--long S`` runs the 256x144 case S seconds and prints RSS at its start and end.

Then the page path (``--no-page`` leaves it out): the studio's Live tab in Debian's Chromium whose fake webcam
plays the barcoded frames; the page reads each camera frame's index as it shows it and each dream's as its
image loads: ``page_fps=``, ``page_latency_p50=``, ``page_latency_p95=`` (the real model at 256x144, 1 step).

``--audio`` measures the audio path instead: bursts in a WAV against the first frame whose features show them
(``audio_delay()``).

    python scripts/bench_live.py [--seconds 20] [--cases cpu256,cpu426,sim720] [--long 600] [--no-page]
    python scripts/bench_live.py --audio
"""
from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout, not an installed copy

import numpy as np

from bench_pipeline import ZOOM_DREAM_S, SimulatedDream  # noqa: E402  (scripts/ is on the path when run)
from zoomdream import live  # noqa: E402
from zoomdream.config import make_job  # noqa: E402
from zoomdream.media import stream  # noqa: E402
from zoomdream.media.ffmpeg import Ffmpeg, ffmpeg_exe  # noqa: E402
from zoomdream.media.reader import _read_exact  # noqa: E402

BITS = 16
CASES = {"cpu256": ("256x144", None, 12), "cpu426": ("426x240", None, 6),
         "sim720": ("1280x720", ZOOM_DREAM_S["1280x720"], 30)}  # the H200's zoom dream at 720p


def free_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def barcode_frame(k: int, w: int, h: int) -> np.ndarray:
    """A frame with index k in its top rows (bits, then their inverse) over moving colour bars."""
    x = np.arange(w)[None, :, None]
    y = np.arange(h)[:, None, None]
    frame = (127 + 100 * np.sin((x + 3 * k) / 23.0 + np.array([0, 2, 4]) + y / 31.0)).astype(np.uint8)
    return draw_barcode(np.broadcast_to(frame, (h, w, 3)).copy(), k)


def draw_barcode(frame: np.ndarray, k: int) -> np.ndarray:
    """``frame`` with index k drawn into its top rows, in place."""
    h, w = frame.shape[:2]
    bw, bh = w // BITS, max(8, h // 10)
    for i in range(BITS):
        bit = (k >> i) & 1
        frame[:bh, i * bw:(i + 1) * bw] = 255 * bit
        frame[bh:2 * bh, i * bw:(i + 1) * bw] = 255 * (1 - bit)
    return frame


def read_barcode(frame: np.ndarray) -> int | None:
    """The index a frame carries, or None where a block is unclear (each bit must differ from its inverse)."""
    h, w = frame.shape[:2]
    bw, bh = w // BITS, max(8, h // 10)
    grey = frame[:2 * bh].mean(axis=2)
    k = 0
    for i in range(BITS):
        x0, x1 = i * bw + bw // 4, i * bw + 3 * bw // 4
        bit, inverse = (grey[row * bh + bh // 4: row * bh + 3 * bh // 4, x0:x1].mean() for row in (0, 1))
        if abs(bit - inverse) < 60:
            return None
        k |= (bit > inverse) << i
    return k


class Sender:
    """Frames with their index sent at ``fps`` in real time through ffmpeg to a UDP port; ``sent[k]`` is when."""

    def __init__(self, port: int, size: tuple[int, int], fps: float):
        self.size, self.fps, self.sent = size, fps, {}
        w, h = size
        self.ff = Ffmpeg(["-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-framerate", str(fps), "-i",
                          "pipe:0", "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-g",
                          str(int(fps)), "-flush_packets", "1", "-muxdelay", "0", "-omit_video_pes_length", "0",
                          "-f", "mpegts", f"udp://127.0.0.1:{port}"], stdin=subprocess.PIPE)
        self.done = threading.Event()
        self.frames = [barcode_frame(k, w, h) for k in range(int(fps) * 2)]  # made once: 2 s of motion
        self.thread = threading.Thread(target=self._work, daemon=True)
        self.thread.start()

    def _work(self) -> None:
        start, k = time.monotonic(), 0
        while not self.done.is_set():
            time.sleep(max(0.0, start + k / self.fps - time.monotonic()))
            frame = self.frames[k % len(self.frames)].copy()
            draw_barcode(frame, k)  # not the whole frame: at 720p its bars took 35 ms of this 2-core CPU
            self.sent[k % 65536] = time.monotonic()
            try:
                self.ff.proc.stdin.write(frame.tobytes())
                self.ff.proc.stdin.flush()
            except OSError:
                return
            k += 1

    def close(self) -> None:
        self.done.set()
        self.thread.join()
        self.ff.kill()


class Receiver:
    """Reads the dreamed stream back and times each distinct index's arrival."""

    def __init__(self, port: int, size: tuple[int, int]):
        self.size, self.got = size, {}
        self.unread = 0
        self.ff = Ffmpeg(stream.source_args(f"udp://127.0.0.1:{port}", size), stdout=subprocess.PIPE)
        self.thread = threading.Thread(target=self._work, daemon=True)
        self.thread.start()

    def _work(self) -> None:
        w, h = self.size
        while True:
            try:
                buf = _read_exact(self.ff.proc.stdout, w * h * 3)
            except (OSError, ValueError):  # closed
                return
            if len(buf) < w * h * 3:
                return
            now = time.monotonic()
            k = read_barcode(np.frombuffer(buf, np.uint8).reshape(h, w, 3))
            if k is None:
                self.unread += 1
            elif k not in self.got:
                self.got[k] = now

    def close(self) -> None:
        self.ff.kill()


def run_case(name: str, size: str, dream_s: float | None, target: float, seconds: float, model, *,
             flow_size: int = 0, long: bool = False) -> dict:
    w, h = (int(v) for v in size.split("x"))
    port_in, port_out = free_port(), free_port()
    receiver = Receiver(port_out, (w, h))
    sender = Sender(port_in, (w, h), 30.0)
    patch = None
    if dream_s is not None:  # an accelerator: the dream sleeps, and the loop overlaps its CPU work with it
        from zoomdream import backend
        from zoomdream.ascent import Dreamer

        patch = Dreamer.dream, backend.has_accelerator
        simulated = SimulatedDream(dream_s)
        Dreamer.dream = lambda self, image, settings=None, *a, **k: simulated(self, image, settings)
        backend.has_accelerator = lambda: True
    job = make_job({"command": "live", "input": f"udp://127.0.0.1:{port_in}", "size": size, "fps": target,
                    "seconds": seconds, "steps": 1, "octaves": 1, "flow_size": flow_size})
    report: dict = {}
    rss = []
    stop = threading.Event()

    def sample_rss() -> None:
        while not stop.wait(10):
            rss.append(rss_mib())

    sampler = threading.Thread(target=sample_rss, daemon=True)
    sampler.start()
    start_rss = rss_mib()
    try:
        live.main(job, [f"udp://127.0.0.1:{port_out}"], model=model, status=live.Status(open(os.devnull, "w")),
                  report=report)
        time.sleep(0.5)  # the last frames' way back
    finally:
        stop.set()
        sender.close()
        receiver.close()
        if patch is not None:
            from zoomdream import backend
            from zoomdream.ascent import Dreamer

            Dreamer.dream, backend.has_accelerator = patch
    latencies = sorted(receiver.got[k] - sender.sent[k] for k in receiver.got if k in sender.sent)
    p = lambda q: 1000 * latencies[min(len(latencies) - 1, int(q * len(latencies)))] if latencies else float("nan")
    fps = len(receiver.got) / report["seconds"] if report.get("seconds") else 0.0
    print(f"{name} {size} {'simulated dream %.3f s' % dream_s if dream_s else 'real model'} target {target:g} fps: "
          f"fps={fps:.1f} dropped={report.get('dropped')} latency_p50={p(0.5):.0f}ms latency_p95={p(0.95):.0f}ms "
          f"loop_s={report.get('work', 0):.4f}" + (f" loop_ratio={report['work'] / dream_s:.2f}" if dream_s else "")
          + f" level={report.get('level')} unread={receiver.unread} loop_latency_p50/p95="
          + "/".join(f"{1000 * v:.0f}" for v in report.get("latency", ())) + "ms", flush=True)
    if long:
        print(f"rss_start={start_rss:.0f}MiB rss_end={rss_mib():.0f}MiB samples={','.join(f'{r:.0f}' for r in rss)}")
    return dict(fps=fps)


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_features() -> str:
    try:
        flags = next(line for line in open("/proc/cpuinfo") if line.startswith("flags")).split()
    except (OSError, StopIteration):
        return "unknown"
    return " ".join(f for f in ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16") if f in flags)


# The page path: the studio's Live tab in Debian's Chromium, its fake webcam playing the barcode frames. In the
# page, each camera frame's index is read as the browser shows it (requestVideoFrameCallback) and each dream's
# when its image has loaded: the latency is the browser's own, camera to dream on screen, both hops included.
PAGE_WATCH = """() => {
    const BITS = 16, canvas = document.createElement('canvas');
    const ctx = canvas.getContext('2d', {willReadFrequently: true});
    const decode = (data, w, h, flip) => {
        const bw = Math.floor(w / BITS), bh = Math.max(8, Math.floor(h / 10));
        let k = 0;
        for (let i = 0; i < BITS; i++) {
            const mean = row => {
                let sum = 0, n = 0;
                for (let y = row * bh + Math.floor(bh / 4); y < row * bh + Math.floor(3 * bh / 4); y++)
                    for (let x = i * bw + Math.floor(bw / 4); x < i * bw + Math.floor(3 * bw / 4); x++) {
                        const o = (y * w + (flip ? w - 1 - x : x)) * 4;
                        sum += (data[o] + data[o + 1] + data[o + 2]) / 3; n++;
                    }
                return sum / n;
            };
            const bit = mean(0), inverse = mean(1);
            if (Math.abs(bit - inverse) < 60) return null;
            if (bit > inverse) k |= 1 << i;
        }
        return k;
    };
    const read = (source, w, h, flip) => {
        canvas.width = w; canvas.height = h; ctx.drawImage(source, 0, 0, w, h);
        return decode(ctx.getImageData(0, 0, w, h).data, w, h, flip);
    };
    window.camera = {}; window.dreams = {}; window.unread = 0;
    const video = document.querySelector('#live-camera video');
    const shown = () => {
        if (video.videoWidth) {
            const k = read(video, video.videoWidth, video.videoHeight, false);
            if (k !== null && !(k in camera)) camera[k] = performance.now();
        }
        video.requestVideoFrameCallback(shown);
    };
    video.requestVideoFrameCallback(shown);
    let last = null;
    const loaded = img => {
        const k = read(img, img.naturalWidth, img.naturalHeight, true);  // the page sends the webcam mirrored
        if (k === null) unread++; else if (!(k in dreams)) dreams[k] = performance.now();
    };
    new MutationObserver(() => {
        const img = document.querySelector('#live-dream img');
        if (!img || img.src === last) return;
        last = img.src;
        if (img.complete && img.naturalWidth) loaded(img);
        else img.addEventListener('load', () => loaded(img), {once: true});
    }).observe(document.querySelector('#live-dream'), {subtree: true, childList: true, attributes: true});
}"""


def page_case(model, seconds: float, steps: int = 1) -> dict:
    """The studio's Live tab at 256x144 (the page's dream size from a 16:9 camera) with ``steps`` steps and one
    octave, as the stream cases: fps (distinct dreams shown a second) and latency from a camera frame shown to
    its dream shown, in the browser. Prints ``page_fps=`` and ``page_latency_p50/p95=``."""
    import tempfile

    from playwright.sync_api import sync_playwright

    from zoomdream.studio import serve

    w, h, fps = 256, 144, 30
    folder = Path(tempfile.mkdtemp(prefix="zoomdream-bench-page-"))
    camera = folder / "camera.y4m"
    ff = Ffmpeg(["-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-framerate", str(fps), "-i", "pipe:0",
                 "-pix_fmt", "yuv420p", "-f", "yuv4mpegpipe", str(camera)], stdin=subprocess.PIPE)
    for k in range(int(fps * (seconds + 30))):  # longer than the run: Chromium loops the file
        ff.proc.stdin.write(barcode_frame(k, w, h).tobytes())
    ff.proc.stdin.close()
    ff.proc.wait()
    port = free_port()
    app = serve(folder / "studio", port=port, block=False, models={(model.backbone.name, None, model.precision):
                                                                      model})
    flags = ["--no-sandbox", "--disable-gpu", "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
             f"--use-file-for-fake-video-capture={camera}"]
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=flags)
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(f"http://127.0.0.1:{port}/")
            page.get_by_role("tab", name="live").click()
            box = page.locator("#live-steps input[type=number]")
            box.fill(str(steps))
            box.press("Enter")
            status = page.locator("#live-status textarea, #live-status input").first
            page.wait_for_function("s => s.value.startsWith('steps')", arg=status.element_handle())
            page.click("#live-start")
            page.wait_for_function("s => s.value.startsWith('dreaming: frame 10 ')", arg=status.element_handle(),
                                   timeout=120_000)  # past the first frame's compiling
            page.evaluate(PAGE_WATCH)
            time.sleep(seconds)
            camera_at, dreams, unread = page.evaluate("() => [window.camera, window.dreams, window.unread]")
            line = status.input_value()
            page.click("#live-stop")
            browser.close()
    finally:
        app.close()
    latencies = sorted(t - camera_at[k] for k, t in dreams.items() if k in camera_at)
    p = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] if latencies else float("nan")
    page_fps = len(dreams) / seconds
    print(f"page 256x144 real model, {steps} step(s), 1 octave, Chromium with a fake webcam: page_fps={page_fps:.1f} "
          f"page_latency_p50={p(0.5):.0f}ms page_latency_p95={p(0.95):.0f}ms unread={unread} (the tab: {line})",
          flush=True)
    return dict(fps=page_fps, p95=p(0.95))


def burst_track(seconds: float = 12.0, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """A quiet 220 Hz hum with a loud noise burst about every 0.83 s (at random sub-hop offsets): the samples
    at the analysis rate and the bursts' times."""
    from zoomdream.audio import RATE

    rng = np.random.default_rng(seed)
    x = 0.05 * np.sin(2 * np.pi * 220 * np.arange(int(seconds * RATE)) / RATE)
    times = 0.9 + np.arange(int((seconds - 1.2) / 0.83)) * 0.83 + rng.uniform(0, 0.2, int((seconds - 1.2) / 0.83))
    for at in times:
        i = int(round(at * RATE))
        x[i:i + 2000] += 0.8 * rng.standard_normal(2000) * np.exp(-np.arange(2000) / 400)
    return x.astype(np.float32), times


def first_after(times: np.ndarray, seen: list[tuple[float, float]]) -> list[float]:
    """For each burst, ms from it to the first (time, onset) seen that shows it (onset > 0.5); one seen before
    a burst that already shows it would be negative."""
    return [1000 * (next(when for when, onset in seen if when >= at - 0.05 and onset > 0.5) - at) for at in times]


def audio_delay(model, fps: float = 24.0, seconds: float = 12.0) -> None:
    """The audio path's delay: the analysis alone (a microphone's blocks of one hop, the features read after
    each), then through `zoomdream live` itself (an image source at 64x48, the track as --audio FILE in real
    time, the features a frame's schedules read against the burst's time: the analysis plus the wait for the
    next frame). Prints ``audio_analysis_delay_ms=`` and ``audio_delay_ms=`` (p50 and max of the bursts)."""
    from zoomdream.audio import RATE, write_wav
    from zoomdream.audio.features import HOP
    from zoomdream.audio.inputs import FilePlayer
    from zoomdream.audio.live import LiveAnalyser
    from zoomdream.live.controls import LiveVariables

    x, times = burst_track(seconds)
    analyser, seen = LiveAnalyser(fps), []
    for i in range(0, len(x), HOP):
        analyser.feed(x[i:i + HOP])
        seen.append((analyser.now, analyser.snapshot()["onset"]))
    alone = first_after(times, seen)
    path = Path(os.environ.get("TMPDIR", "/tmp")) / f"zoomdream-bench-bursts-{os.getpid()}.wav"
    write_wav(path, x, RATE)
    frames, began, record, start = [], [], LiveVariables.record, FilePlayer.start

    def spy(self, t, values, when):  # what each frame's schedules read, and when its source frame was taken
        frames.append((when, values.get("onset", 0.0)))
        record(self, t, values, when)

    def playing(self, at):  # when the track starts: the first frame's
        began.append(at)
        start(self, at)

    LiveVariables.record, FilePlayer.start = spy, playing
    try:
        image = Path(__file__).resolve().parents[1] / "samples" / "chelsea.png"
        job = make_job({"command": "live", "input": str(image), "size": "64x48", "fps": fps, "seconds": seconds,
                        "steps": 1, "octaves": 1, "audio": str(path), "step_size": "0.01 + 0.02*onset"})
        live.main(job, [str(path.with_suffix(".mkv"))], model=model, status=live.Status(open(os.devnull, "w")))
    finally:
        LiveVariables.record, FilePlayer.start = record, start
        path.unlink(missing_ok=True)
        path.with_suffix(".mkv").unlink(missing_ok=True)
    through = first_after(times[times < seconds - 0.3], [(when - began[0], onset) for when, onset in frames])
    print(f"audio: {len(times)} bursts; analysis alone: p50 {np.median(alone):.1f} ms, max {max(alone):.1f} ms; "
          f"through live at {len(frames) / seconds:.1f} fps: p50 {np.median(through):.1f} ms, max "
          f"{max(through):.1f} ms", flush=True)
    print(f"audio_analysis_delay_ms={max(alone):.1f} audio_delay_ms={np.median(through):.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--cases", default="cpu256,cpu426,sim720")
    parser.add_argument("--long", type=float, default=0, help="run the 256x144 case this long; print RSS")
    parser.add_argument("--flow-size", type=int, default=320, help="--flow-size (a frame no bigger: its own size)")
    parser.add_argument("--no-page", action="store_true", help="leave out the page path (the studio's Live tab)")
    parser.add_argument("--audio", action="store_true", help="only the audio path's delay (audio_delay_ms=)")
    args = parser.parse_args()
    from zoomdream.models import load_model
    from zoomdream.precision import resolve

    print(f"cpu: {os.cpu_count()} cores, {cpu_features()}; ffmpeg {ffmpeg_exe()}", flush=True)
    model = load_model("efficientnet-lite0", None, resolve("auto", "efficientnet-lite0", None))
    if args.long:
        run_case("long", "256x144", None, 12, args.long, model, long=True)
        return
    if args.audio:
        audio_delay(model)
        return
    fps = {}
    for name in args.cases.split(","):
        size, dream_s, target = CASES[name]
        fps[name] = run_case(name, size, dream_s, target, args.seconds, model,
                             flow_size=args.flow_size)["fps"]
    if "cpu256" in fps:
        print(f"live_fps={fps['cpu256']:.1f}")
    if not args.no_page:
        page_case(model, args.seconds)


if __name__ == "__main__":
    main()
