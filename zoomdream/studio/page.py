"""The studio's web page over a ``Studio``: a tab per command and the layers tab on the left; the progress, the
latest frame, Stop, Resume, the result and its downloads on the right; a job file loads into its form. Each
part is built and wired in a module of its own (``tabs``, ``layer_browser``); this module puts them together.
Gradio is the optional extra ``pip install 'zoomdream[studio]'``."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from zoomdream.errors import error_line
from zoomdream.studio.forms import FORMATS, TABS, form_value
from zoomdream.studio.layer_browser import layer_browser, wire_layer_browser
from zoomdream.studio.live_session import LiveDreams
from zoomdream.studio.live_tab import live_tab, wire_live
from zoomdream.studio.session import Studio
from zoomdream.studio.tabs import command_form, wire_form
from zoomdream.studio.view import DREAM, View

# Gradio names a text or number field after its whole <label>, help text included, and an upload "File upload":
# give each control its field's label as its accessible name (screen readers, get_by_label), and its help as
# its description, also on fields drawn later (other tabs, "More settings").
NAME_CONTROLS = """() => {
    const name = () => document.querySelectorAll('.block').forEach(block => {
        const title = block.querySelector('[data-testid="block-info"], [data-testid="block-label"], .label-text');
        const info = block.querySelector('.info-text');
        const control = block.querySelector('input[type=file], input:not([aria-label]), textarea:not([aria-label])');
        if (!title || !control) return;
        control.setAttribute('aria-label', title.textContent.trim());
        if (info) control.setAttribute('aria-description', info.textContent.trim());
    });
    name();
    new MutationObserver(name).observe(document.body, {subtree: true, childList: true});
}"""
# A page left open after the server stops would keep its last progress line (and Gradio's timer counting): ask the
# server every 2 s, and say so over the page when it does not answer (and when it is back).
WATCH_SERVER = """() => {
    const note = document.createElement('div');
    note.id = 'server-gone';
    note.setAttribute('role', 'alert');
    note.style.cssText = 'display:none; position:fixed; top:0; left:0; right:0; z-index:10000; padding:12px; '
        + 'text-align:center; font-weight:bold; background:#b91c1c; color:white';
    document.body.appendChild(note);
    let gone = false;
    const ask = async () => {
        try {
            await fetch(window.location.pathname, {method: 'HEAD', cache: 'no-store'});
            if (gone) note.textContent = 'The studio server is back: reload this page.';
        } catch (e) {
            gone = true;
            note.textContent = 'The studio server has stopped: nothing on this page updates any more. Start '
                + 'zoomdream studio again and reload the page (Resume continues a render it kept).';
            note.style.display = 'block';
        }
        setTimeout(ask, 2000);
    };
    setTimeout(ask, 2000);
}"""
PAGE_JS = f"() => {{ ({NAME_CONTROLS})(); ({WATCH_SERVER})(); }}"


def build_app(studio: Studio):
    """The Gradio page over ``studio``: a form per command, the latest frame, Stop, Resume and downloads."""
    import gradio as gr

    dreams = LiveDreams(studio)  # the live tab's engine
    with gr.Blocks(title="zoomdream studio", analytics_enabled=False) as app:
        gr.Markdown("## zoomdream studio\nDream an image, an infinite zoom or a video. Every field is a setting "
                    "of `zoomdream render`; each render also saves its `job.toml`.")
        with gr.Row():
            with gr.Column(scale=3):
                tabs, forms, browser, live = _tabs(gr, dreams)
                job_file = gr.UploadButton("Load a job.toml into its form", file_types=[".toml"], type="filepath",
                                           elem_id="job-file")
            with gr.Column(scale=2):
                view, resume = _results(gr, studio)
        for command, made in forms.items():
            wire_form(view, command, made)
        _wire_stop_and_resume(view, resume)
        wire_layer_browser(view, browser, forms)
        wire_live(view, app, dreams, live)
        _wire_job_loading(view, job_file, tabs, forms)
    app.live = dreams
    return app


def _tabs(gr, dreams: LiveDreams) -> tuple[Any, dict[str, dict[str, Any]], dict[str, Any], dict[str, Any]]:
    """The tabs: one form per command, the layer browser, then the webcam dreamed live."""
    forms: dict[str, dict[str, Any]] = {}
    with gr.Tabs(selected="zoom") as tabs:
        for command in TABS:
            with gr.Tab(command, id=command, elem_id=f"tab-{command}"):
                forms[command] = command_form(gr, command)
        with gr.Tab("layers", id="layers"):
            browser = layer_browser(gr)
        with gr.Tab("live", id="live", elem_id="tab-live"):
            live = live_tab(gr, dreams)
    return tabs, forms, browser, live


def _results(gr, studio: Studio) -> tuple[View, Any]:
    """The column a render shows in (progress, latest frame, Stop, result, downloads), and the Resume button."""
    status = gr.Textbox(label="progress", interactive=False, elem_id="status")
    # each frame a JPEG file of its own (Studio.preview): fast to encode, so watching costs the render little
    preview = gr.Image(label="latest frame", interactive=False, elem_id="preview")
    with gr.Row():
        stop = gr.Button("Stop", interactive=False, elem_id="stop")  # armed while a dream runs
        resume = gr.Button("Resume", elem_id="resume")
    result_video = gr.Video(label="result", interactive=False, elem_id="result-video")
    result_image = gr.Image(label="result", interactive=False, visible=False, elem_id="result-image")
    downloads = gr.File(label="downloads: the output and its job.toml", file_count="multiple",
                        interactive=False, elem_id="downloads")
    return View(gr, studio, [status, preview, result_video, result_image, downloads], stop), resume


def _wire_stop_and_resume(view: View, resume) -> None:
    gr, studio = view.gr, view.studio

    def resumed():
        yield from view.shown(studio.resume())

    def stop_pressed() -> None:  # a notice: the progress box keeps the render's own line, which ends last
        gr.Info(studio.stop(), duration=3)  # gone by the time a stopped render is resumed

    view.stop.click(stop_pressed, None, None, api_visibility="private", concurrency_limit=None)
    gr.api(studio.stop, api_name="stop", concurrency_limit=None)
    view.armed(resume.click, resumed, None, view.outputs, api_name="resume", **DREAM)


def _wire_job_loading(view: View, job_file, tabs, forms: dict[str, dict[str, Any]]) -> None:
    """A loaded job file selects its tab and fills its form (the output format too); the other forms stay."""
    gr, studio = view.gr, view.studio
    targets = [tabs, view.status]
    for form in forms.values():
        targets += [form["format"], *form["fields"].values()]

    def load(path):
        try:
            job = studio.load_job(path)
        except Exception as e:
            return [gr.skip(), view.noticed(error_line(e))] + [gr.skip()] * (len(targets) - 2)
        values = [gr.update(selected=job.command), f"loaded {Path(path).name}: {job.command} (press Render)"]
        for command, form in forms.items():
            if command != job.command:
                values += [gr.skip()] * (1 + len(form["fields"]))
                continue
            suffix = Path(job.output).suffix.lower() if job.output else ""
            values.append(suffix if suffix in FORMATS[command] else gr.skip())
            values += [form_value(name, getattr(job, name)) for name in form["fields"]]
        return values

    job_file.upload(load, job_file, targets, api_name="load_job")

