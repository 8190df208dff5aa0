"""The studio's Live tab: the visitor's webcam streams to the server through Gradio's own streaming image, each
frame is dreamed by the live frame source (``live_session``) and the dream comes back beside it, with fps and
latency, Start and Stop, and sliders that act on the next frame (a loaded look moves them). Not WebRTC
(FastRTC): it needs Gradio below 6, and measured here it was no faster (docs/live.md has the figures).

Start and Stop drive the webcam's own record button (hidden, ``LIVE_CSS``), so the stream and the engine start
and end together; one visitor dreams at a time and the others are told they wait (``LiveDreams``)."""
import base64
from typing import Any

import numpy as np

from zoomdream.errors import error_line
from zoomdream.studio.live_session import LiveDreams
from zoomdream.studio.view import View

CONTROLS = ("step_size", "steps", "octaves", "blend", "layers")  # what the tab changes while it runs
SLIDERS = (  # name, low, high, step, label, what it does
    ("step_size", 0, 0.1, 0.005, "strength (step size)", "how far each step moves the pixels; 0: the camera, carried"),
    ("steps", 1, 10, 1, "steps", "ascent steps a frame: more is stronger and slower"),
    ("octaves", 1, 6, 1, "octaves", "scales dreamed, largest shapes first: more is slower"),
    ("blend", 0, 1, 0.05, "blend", "how much of the last dream each frame starts from"))
STREAM_EVERY = 0.04  # the most often the browser sends a frame; it sends none while the last is being dreamed
LIVE_CSS = "#live-camera button[aria-label='capture photo'] {display: none !important}"
# Start: let the page use the webcam (the browser asks once), then start its stream; Stop: end the stream.
CAMERA_BUTTON = "document.querySelector(\"#live-camera button[aria-label='capture photo']\")"
START_JS = f"""async () => {{
    const grant = document.querySelector('#live-camera [title="grant webcam access"] button');
    if (grant) grant.click();
    for (let i = 0; i < 200 && !{CAMERA_BUTTON}; i++) await new Promise(r => setTimeout(r, 50));
    const record = {CAMERA_BUTTON};
    if (record && !record.textContent.includes('Stop')) record.click();
}}"""
STOP_JS = f"""() => {{
    const record = {CAMERA_BUTTON};
    if (record && record.textContent.includes('Stop')) record.click();
}}"""


def live_tab(gr, live: LiveDreams) -> dict[str, Any]:
    """The tab's controls: the camera and the dream side by side, the figures line, Start and Stop, the
    sliders and the layers box (each starting at the live job's own value)."""
    made: dict[str, Any] = {}
    gr.Markdown("Your webcam, dreamed as it plays: press **Start** (the browser asks to use the camera). One "
                "visitor dreams at a time; the sliders and the layers act on the next frame.")
    with gr.Row():
        made["start"] = gr.Button("Start", variant="primary", elem_id="live-start")
        made["stop"] = gr.Button("Stop", elem_id="live-stop")
    made["status"] = gr.Textbox(label="live", value="press Start", interactive=False, elem_id="live-status")
    with gr.Row():
        made["camera"] = gr.Image(label="your camera", sources=["webcam"], streaming=True, type="numpy",
                                  elem_id="live-camera")
        made["dream"] = inline_image(gr, label="dreamed", interactive=False, elem_id="live-dream")
    job = live.job
    for row in (SLIDERS[:2], SLIDERS[2:]):
        with gr.Row():
            for name, low, high, step, label, info in row:
                value = getattr(job, name)
                made[name] = gr.Slider(low, high, value=int(value) if step == 1 else float(value), step=step,
                                       label=label, info=info, elem_id=f"live-{name.replace('_', '-')}")
    made["layers"] = gr.Textbox(label="layers", value=job.layers or "", max_lines=1, elem_id="live-layers",
                                info="LAYER:WEIGHT,... as in --layers (empty: the model's own); Enter applies")
    made["preset"] = gr.UploadButton("Load a look (a job.toml) into the live dream", file_types=[".toml"],
                                     type="filepath", elem_id="live-preset")
    return made


def wire_live(view: View, app, live: LiveDreams, made: dict[str, Any]) -> None:
    """The stream, Start, Stop, the controls, and the engine freed when a visitor's page closes."""
    gr, status = view.gr, made["status"]

    def dreamed(image, request: gr.Request):
        if image is None:
            return gr.skip(), gr.skip()
        dream, line = live.frame(request.session_hash, image)
        return (gr.skip() if dream is None else dream), (gr.skip() if line is None else line)

    made["camera"].stream(dreamed, made["camera"], [made["dream"], status], stream_every=STREAM_EVERY,
                          time_limit=None, concurrency_limit=None, api_visibility="private",
                          show_progress="hidden")  # no timer over the dream at every frame
    def started(request: gr.Request) -> str:
        live.start(request.session_hash)
        return "starting the camera"

    made["start"].click(started, None, status, js=START_JS, queue=False, api_visibility="private")
    def stopped(request: gr.Request) -> str:  # not from __future__'s string annotations: Gradio reads this one
        return live.stop(request.session_hash)

    def left(request: gr.Request) -> None:  # a visitor who leaves frees the engine
        live.stop(request.session_hash)

    made["stop"].click(stopped, None, status, js=STOP_JS, api_visibility="private", concurrency_limit=None)
    app.unload(left)
    for name in CONTROLS:
        control = made[name]
        event = control.submit if name == "layers" else control.change  # the layers on Enter, not each letter
        event(_setter(view, live, name), control, status, api_visibility="private", concurrency_limit=None)

    def preset(path: str):
        """The look's settings from the next frame, and the controls moved to show them."""
        try:
            names = live.controls.load_preset(path)
        except Exception as e:
            return view.noticed(error_line(e)), *(gr.skip() for _ in CONTROLS)
        shown = (live.controls.shown(name) for name in CONTROLS)
        return (f"{', '.join(names).replace('_', ' ')} from the look, from the next frame",
                *((value or "") if name == "layers" else value for name, value in zip(CONTROLS, shown)))

    made["preset"].upload(preset, made["preset"], [status, *(made[name] for name in CONTROLS)],
                          api_visibility="private", concurrency_limit=None)


def inline_image(gr, **options):
    """A ``gr.Image`` whose frames reach the page inside the event's own message, as a JPEG data URL, instead of
    as a file written to Gradio's cache that the page then fetches: 5.7 dreams shown a second against 3.5, p95
    latency 412 against 738 ms (the real model at 256x144 on a loaded 2-core machine; docs/live.md). Its
    ``postprocess`` is replaced on the instance: a subclass would make Gradio write a .pyi beside this file."""
    from gradio.data_classes import ImageData

    image = gr.Image(**options)
    plain = image.postprocess
    image.postprocess = lambda value: (ImageData(url=jpeg_data_url(value)) if isinstance(value, np.ndarray)
                                       else plain(value))
    return image


def jpeg_data_url(frame: np.ndarray) -> str:
    import cv2

    _, jpeg = cv2.imencode(".jpg", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
    return "data:image/jpeg;base64," + base64.b64encode(jpeg.tobytes()).decode()


def _setter(view: View, live: LiveDreams, name: str):
    """A control's change sent to the live controls: a line saying so (none where nothing changed), or the error
    as a notice."""
    def set_control(value):
        try:
            line = live.control(name, value if name != "layers" or value else None)
        except Exception as e:
            return view.noticed(error_line(e))
        return view.gr.skip() if line is None else line
    return set_control
