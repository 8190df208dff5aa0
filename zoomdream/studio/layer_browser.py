"""The layers tab: dream each chosen layer on a small copy of an image and pick layers by looking at the
results, then hand the picked ``--layers`` spec to every form."""
from __future__ import annotations

from typing import Any

from zoomdream.errors import error_line
from zoomdream.studio.view import DREAM, View


def layer_browser(gr) -> dict[str, Any]:
    """The tab's controls, by name."""
    from zoomdream.layers import LAYERS
    from zoomdream.models import BACKBONES, DEFAULT_MODEL

    gr.Markdown("Dream each chosen layer on a small copy of an image, then pick by looking. Results are kept, "
                "so trying a layer again is instant.")
    with gr.Row():
        image = gr.Image(label="image (empty: the image form's input, else the zoom form's)", type="filepath",
                         sources=["upload", "clipboard"], elem_id="layers-image")
        with gr.Column():
            model = gr.Dropdown(list(BACKBONES), value=DEFAULT_MODEL, label="model", elem_id="layers-model")
            weights = gr.Textbox(label="weights", info="a weights file of your own, 'random' for an untrained "
                                 "network, or empty for the model's own", max_lines=1, elem_id="layers-weights")
            listed = gr.Button("List the layers of these weights")
            layers = gr.Dropdown(list(LAYERS[DEFAULT_MODEL]), multiselect=True, label="layers to try",
                                 elem_id="layers-choice")  # filled at once: the table needs no model loaded
    go = gr.Button("Dream each layer", variant="primary", elem_id="layers-go")
    gallery = gr.Gallery(label="one small dream per layer: click one to pick it", columns=4, elem_id="layers-gallery",
                         object_fit="contain")  # whole pictures: a wide frame is not cropped to a square
    with gr.Row():
        picked = gr.Textbox(label="picked layers", info="the --layers spec the forms get", max_lines=1)
        use = gr.Button("Use in the image, zoom and video forms")
    return dict(image=image, model=model, weights=weights, listed=listed, layers=layers, go=go, gallery=gallery,
                picked=picked, use=use, tried=gr.State([]))


def wire_layer_browser(view: View, b: dict[str, Any], forms: dict[str, dict[str, Any]]) -> None:
    """The tab's events; the forms' input images stand in for an empty image, and their layers take the pick."""
    from zoomdream.layers import LAYERS

    gr, studio, status = view.gr, view.studio, view.status

    def list_layers(model, weights):
        try:
            return gr.update(choices=studio.layers(model, weights.strip() or None)), f"{model}: pick layers to try"
        except Exception as e:
            return gr.skip(), view.noticed(error_line(e))

    def try_layers(image, model, weights, layers, *form_images):
        image = image or next((i for i in form_images if i), None)  # else the image the forms dream
        if not image or not layers:
            yield gr.skip(), view.noticed("zoomdream: error: give an image and at least one layer to try"), gr.skip()
            return
        made = []
        for k, layer in enumerate(layers):
            yield gr.skip(), f"layer {k + 1} of {len(layers)}: {layer}", gr.skip()
            try:
                made.append((studio.try_layer(image, model, weights.strip() or None, layer), layer))
            except Exception as e:
                # the gallery shows what ``tried`` names, or a click picks by the wrong index
                yield list(made), view.noticed(error_line(e)), [name for _, name in made]
                return
            yield list(made), f"layer {k + 1} of {len(layers)}: {layer}", [name for _, name in made]
        yield list(made), f"dreamed {len(made)} layer{'s' * (len(made) != 1)}: click one to pick it", layers

    def pick(tried, current, evt: gr.SelectData):
        chosen = [part for part in current.split(",") if part.strip()] if current else []
        layer = tried[evt.index]
        return ",".join(chosen if layer in chosen else [*chosen, layer])

    pick.__annotations__["evt"] = gr.SelectData  # Gradio finds the event argument by its type

    b["model"].change(lambda model: gr.update(choices=list(LAYERS[model]), value=[]), b["model"], b["layers"],
                      api_visibility="private")
    b["listed"].click(list_layers, [b["model"], b["weights"]], [b["layers"], status], api_name="list_layers",
                      **DREAM)
    form_images = [forms[c]["fields"]["input"] for c in ("image", "zoom")]
    view.armed(b["go"].click, try_layers, [b["image"], b["model"], b["weights"], b["layers"], *form_images],
               [b["gallery"], status, b["tried"]], api_name="try_layers", **DREAM)
    b["gallery"].select(pick, [b["tried"], b["picked"]], b["picked"], api_visibility="private")
    targets = [form["fields"]["layers"] for form in forms.values()]
    b["use"].click(lambda picked: [picked] * len(targets), b["picked"], targets, api_visibility="private")

