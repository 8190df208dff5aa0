"""The one builder of the dream engine: settings checked, objective made (with the guide image's features
where one is given), ``Dreamer`` compiled once per render."""
from __future__ import annotations

import numpy as np

from zoomdream import backend, media
from zoomdream.ascent import Dreamer
from zoomdream.config import Job
from zoomdream.errors import ZoomdreamError
from zoomdream.frames.levels import to_unit
from zoomdream.layers import LAYERS
from zoomdream.models import LoadedModel, get_backbone, resolve_weights
from zoomdream.objective import LayerTerm, guide_features, make_objective, parse_layers
from zoomdream.settings import CPU_TILE, GPU_TILE, MAX_TILE, EngineSettings, number


def resolve_engine(job: Job, keyframed: bool = False) -> EngineSettings:
    """The engine settings of a job, checked (``keyframed``: the loop checks its layer keyframes itself)."""
    resolve_weights(get_backbone(job.model), job.weights)  # an unknown model or missing weights fail now
    if not keyframed and job.layers is not None:
        check_terms(parse_layers(job.layers), job.layers, job)
    if job.guide:
        media.read_image(job.guide)  # a missing or broken guide fails now, not after the model loads
    tile = None if job.tile is None else number(job.tile, "tile", low=32, high=MAX_TILE, integer=True)
    return EngineSettings(model=job.model, weights=job.weights, precision=job.precision, layers=job.layers,
                          loss=job.loss, tv=number(job.tv, "tv", low=0, high=1000), guide=job.guide, tile=tile)


def machine_tile() -> int:
    """The default tile: bounded memory on a CPU, a card kept busy on a GPU."""
    return GPU_TILE if backend.has_accelerator() else CPU_TILE


def check_terms(terms: tuple[LayerTerm, ...], spec: str, job: Job) -> None:
    """Weights, and for a built-in network the layer names and channels (from ``layers.LAYERS``), checked before
    the model loads. A Lite network from a weights file of the user's may differ: it is checked once built."""
    for term in terms:
        if not np.isfinite(term.weight) or abs(term.weight) > 1e6:
            raise ZoomdreamError(f"layer weight {term.weight} in '{spec}' must be a finite number (e.g. 0.5)")
    backbone = get_backbone(job.model)
    if backbone.name in LAYERS and not (backbone.package and job.weights):
        check_channels(terms, backbone.name, {layer: shape[-1] for layer, shape in LAYERS[backbone.name].items()})


def check_channels(terms: tuple[LayerTerm, ...], model: str, channels: dict[str, int]) -> None:
    """Each term's layer is one of ``channels`` (layer -> its channel count) and its channels exist."""
    for term in terms:
        if term.layer not in channels:
            raise ZoomdreamError(f"unknown layer '{term.layer}' for {model} (valid: {', '.join(channels)})")
        if term.channels and max(term.channels) >= channels[term.layer]:
            raise ZoomdreamError(f"channel {max(term.channels)} of layer '{term.layer}' does not exist (it has "
                                 f"channels 0-{channels[term.layer] - 1})")


def build_dreamer(settings: EngineSettings, model: LoadedModel,
                  terms: tuple[LayerTerm, ...] | None = None) -> Dreamer:
    """Compile the engine for ``terms`` (default: the settings' layers, else the model's default layers) and
    the guide image, if any."""
    objective = make_objective(terms or settings.layers or model.backbone.default_layers, settings.loss,
                               settings.tv)
    check_channels(objective.terms, model.backbone.name,
                   {layer: model.model.get_layer(layer).output.shape[-1] for layer in model.layers})
    if settings.guide:
        guide = to_unit(media.fit_max_size(media.read_image(settings.guide), 512))
        objective = objective.with_guide(guide_features(model.feature_model(objective.layers), objective.layers,
                                                        guide))
    return Dreamer(model, objective, tile=settings.tile or machine_tile())  # the machine is asked only now
