"""The studio in a real headless browser: Debian's Chromium driven by Playwright (never a downloaded browser).
The page loads, its fields are found by their labels (as a screen reader names them), a render starts from a
click, the latest-frame preview appears and changes, the finished video plays (the browser decodes its frames),
and a screenshot is kept in test-artifacts/studio.png."""
import shutil
from contextlib import contextmanager
from pathlib import Path

import pytest
from conftest import free_port

sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# As root in a sandbox with no network: no Chrome sandbox, no GPU, and none of Chromium's own connections.
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run", "--disable-quic"]
SAMPLE = str(Path(__file__).resolve().parent.parent / "samples" / "chelsea.png")
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
WATCH_PREVIEW = """() => {
    window.previews = new Set();
    const note = () => { const img = document.querySelector('#preview img'); if (img && img.src) window.previews.add(img.src); };
    new MutationObserver(note).observe(document.querySelector('#preview'), {subtree: true, childList: true, attributes: true});
}"""
PLAYING = """() => {
    const video = document.querySelector('#result-video video');
    return video.currentTime > 0 && video.getVideoPlaybackQuality().totalVideoFrames > 0;
}"""
PLAYED = """async () => {
    const video = document.querySelector('#result-video video');
    const played = {decoded: video.getVideoPlaybackQuality().totalVideoFrames, time: video.currentTime,
                    width: video.videoWidth, error: video.error && video.error.message};
    video.pause();
    video.currentTime = video.duration / 2;  // a frame to show in the screenshot
    await new Promise(resolve => video.addEventListener('seeked', resolve, {once: true}));
    return played;
}"""
# Every preview image decoded and laid out: loaded, and its box the same over two painted frames.
PREVIEW_SETTLED = """async () => {
    const images = () => [...document.querySelectorAll('#preview img')];
    const boxes = () => JSON.stringify(images().map(i => i.getBoundingClientRect()));
    const before = boxes();
    for (let k = 0; k < 2; k++) await new Promise(requestAnimationFrame);
    return images().every(i => i.complete && i.naturalWidth > 0) && boxes() === before;
}"""


def field(page, label: str):
    """A control of the zoom form found by its accessible name, exactly as the page labels it."""
    return page.locator("#tab-zoom").get_by_label(label, exact=True)


def fill(page, label: str, value: str) -> None:
    field(page, label).fill(value)


@contextmanager
def chromium_page(url: str):
    """``url`` loaded in headless Debian Chromium (the docs' browser test uses it too)."""
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian's chromium is missing: install it with `apt-get install -y chromium` (README)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(url)
            yield page
        finally:
            browser.close()


@contextmanager
def studio_page(studio):
    """The studio's page, loaded in headless Chromium."""
    with chromium_page(studio[1]) as page:
        page.wait_for_selector("#render-zoom")
        yield page


def test_a_render_started_in_the_browser_shows_its_frames_and_plays(studio):
    with studio_page(studio) as page:
        field(page, "input image (or tick noise)").set_input_files(SAMPLE)
        page.wait_for_selector("#zoom-input img")
        for label, value in {"max size": "128", "frames": "24", "octaves": "1", "steps": "3"}.items():
            fill(page, label, value)
        page.evaluate(WATCH_PREVIEW)
        page.click("#render-zoom")
        status = page.locator("#status").locator("input, textarea").first
        page.wait_for_function("s => s.value.startsWith('done') || s.value.startsWith('zoomdream: error')",
                               arg=status.element_handle(), timeout=180_000)
        assert status.input_value().startswith("done: 24 frames"), status.input_value()
        assert page.evaluate("() => window.previews.size") >= 2  # the latest frame appeared and changed
        page.evaluate("() => { const v = document.querySelector('#result-video video'); v.muted = true; "
                      "return v.play(); }")
        page.wait_for_function(PLAYING, timeout=30_000)  # the clock moved and a frame was decoded
        played = page.evaluate(PLAYED)
        assert played["decoded"] > 0 and played["time"] > 0 and played["width"] == 128, played
        ARTIFACTS.mkdir(exist_ok=True)
        page.evaluate("() => window.scrollTo(0, 0)")
        page.wait_for_function(PREVIEW_SETTLED)  # the lazily loaded preview, laid out again after the scroll
        page.screenshot(path=str(ARTIFACTS / "studio.png"))


def test_stop_and_resume_clicked_in_the_page_and_a_bad_value_is_a_notice_in_sight(studio):
    """Stop's answer and the errors are notices over the page: the progress box is out of sight below a long
    form, and a Stop answer written there could land after the render's last line and hide it."""
    with studio_page(studio) as page:
        field(page, "noise").check()
        for label, value in {"size": "64x64", "frames": "60", "octaves": "1", "steps": "2"}.items():
            fill(page, label, value)
        status = page.get_by_label("progress", exact=True)
        stop = page.get_by_role("button", name="Stop", exact=True)
        assert stop.is_disabled()  # nothing to stop yet: not armed
        page.click("#render-zoom")
        page.wait_for_function("s => s.value.startsWith('frame ')", arg=status.element_handle(), timeout=120_000)
        stop.click()
        page.wait_for_function("s => s.value.startsWith('stopped') || s.value.startsWith('done')",
                               arg=status.element_handle(), timeout=60_000)
        assert status.input_value().startswith("stopped after frame"), status.input_value()
        page.wait_for_function("() => document.querySelector('#stop').disabled", timeout=30_000)
        page.click("#resume")
        page.wait_for_function("s => s.value.startsWith('done') || s.value.startsWith('zoomdream: error')",
                               arg=status.element_handle(), timeout=120_000)
        assert status.input_value().startswith("done: 60 frames"), status.input_value()
        fill(page, "zoom", "1.02+")
        page.click("#render-zoom")
        notice = page.locator(".toast-body").filter(has_text="zoomdream: error: --zoom: invalid expression")
        notice.wait_for(timeout=30_000)
        assert notice.is_visible() and notice.bounding_box()["y"] < 900


def test_a_page_left_open_says_when_the_server_has_stopped(lite0, tmp_path):
    """The page kept its last progress line (and Gradio's timer counting) after the server stopped: now a notice
    over the page says it has stopped, and what to do."""
    from zoomdream.studio import serve

    port = free_port()
    app = serve(tmp_path, port=port, block=False, models={("efficientnet-lite0", None, "float32"): lite0})
    try:
        with chromium_page(f"http://127.0.0.1:{port}/") as page:
            page.wait_for_selector("#render-zoom")
            notice = page.locator("#server-gone")
            assert not notice.is_visible()
            app.close()
            notice.wait_for(state="visible", timeout=30_000)
            assert notice.inner_text().startswith("The studio server has stopped"), notice.inner_text()
    finally:
        app.close()
