"""The one builder of the dream engine: settings checked, objective made (with the guide image's features
where one is given), ``Dreamer`` compiled once per render."""
from __future__ import annotations

import numpy as np

from zoomdream import backend, media
from zoomdream.ascent import Dreamer, to_unit
from zoomdream.config import Job
from zoomdream.errors import ZoomdreamError
from zoomdream.models import LoadedModel
from zoomdream.objective import LayerTerm, guide_features, make_objective, parse_layers
from zoomdream.settings import GPU_TILE, MAX_TILE, EngineSettings, number


def resolve_engine(job: Job, keyframed: bool = False) -> EngineSettings:
    """The engine settings of a job, checked (``keyframed``: the loop checks its layer keyframes itself)."""
    if not keyframed and job.layers is not None:
        check_terms(parse_layers(job.layers), job.layers)
    if job.guide:
        media.read_image(job.guide)  # a missing or broken guide fails now, not after the model loads
    tile = machine_tile() if job.tile is None else job.tile
    return EngineSettings(model=job.model, weights=job.weights, precision=job.precision, layers=job.layers,
                          loss=job.loss, tv=number(job.tv, "tv", low=0, high=1000), guide=job.guide,
                          tile=number(tile, "tile", low=32, high=MAX_TILE, integer=True))


def machine_tile() -> int:
    """The default tile: bounded memory on a CPU, a card kept busy on a GPU."""
    return GPU_TILE if backend.has_accelerator() else EngineSettings.tile


def check_terms(terms: tuple[LayerTerm, ...], spec: str) -> None:
    for term in terms:
        if not np.isfinite(term.weight) or abs(term.weight) > 1e6:
            raise ZoomdreamError(f"layer weight {term.weight} in '{spec}' must be a finite number (e.g. 0.5)")


def build_dreamer(settings: EngineSettings, model: LoadedModel,
                  terms: tuple[LayerTerm, ...] | None = None) -> Dreamer:
    """Compile the engine for ``terms`` (default: the settings' layers, else the model's default layers) and
    the guide image, if any."""
    objective = make_objective(terms or settings.layers or model.backbone.default_layers, settings.loss,
                               settings.tv)
    for term in objective.terms:
        model.check_layer(term.layer)
        channels = model.model.get_layer(term.layer).output.shape[-1]
        if term.channels and max(term.channels) >= channels:
            raise ZoomdreamError(f"channel {max(term.channels)} of layer '{term.layer}' does not exist (it has "
                                 f"channels 0-{channels - 1})")
    if settings.guide:
        guide = to_unit(media.fit_max_size(media.read_image(settings.guide), 512))
        objective = objective.with_guide(guide_features(model.feature_model(objective.layers), objective.layers,
                                                        guide))
    return Dreamer(model, objective, tile=settings.tile)
