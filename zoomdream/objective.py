"""What to maximise: weighted layer activations, single channels, a guide image, a smoothness penalty.

An objective is data (frozen dataclasses) plus one pure function, ``Objective.loss``, written in
``keras.ops`` so it runs inside the compiled step on any Keras backend. Layer weights are passed at run time
as a vector, so a keyframed blend of layers changes from frame to frame without recompiling.

Layer syntax (CLI, TOML and Python alike)::

    block10                 one layer, weight 1
    block10:1.0,block12:0.5 weighted sum (like the Keras example's {'mixed2': 0.2, 'mixed3': 0.5, ...})
    mixed4[37]              only channel 37 of mixed4 (dream a single feature)
    mixed4[37,40]:2         channels 37 and 40, weight 2
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from typing import TYPE_CHECKING

import numpy as np

from zoomdream.errors import ZoomdreamError

if TYPE_CHECKING:  # Keras loads with the model, so layer specs are checked without it
    import keras

LOSSES = ("square", "mean")

_TERM = re.compile(r"^\s*([A-Za-z_][\w]*)\s*(?:\[\s*([\d\s,]+)\s*\])?\s*(?::\s*([^,\[\]:]+?))?\s*$")


@dataclass(frozen=True)
class LayerTerm:
    """One layer's share of the objective."""

    layer: str
    weight: float = 1.0
    channels: tuple[int, ...] | None = None

    def __str__(self) -> str:
        channels = f"[{','.join(map(str, self.channels))}]" if self.channels else ""
        return f"{self.layer}{channels}:{self.weight:g}"


def _split_top_level(text: str) -> list[str]:
    """Split on commas that are not inside [...], so `mixed4[1,2]:1,mixed5` is two terms."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += {"[": 1, "]": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return parts


MAX_TERMS = 64  # layers in one spec: each is a loss term of every ascent step


def parse_layers(spec: str) -> tuple[LayerTerm, ...]:
    """Parse ``"block10:1.0,mixed4[37]:0.5"`` into terms; errors name the bad part and the syntax."""
    terms = []
    parts = _split_top_level(spec)
    if len(parts) > MAX_TERMS:
        raise ZoomdreamError(f"the layer spec has {len(parts)} terms (at most {MAX_TERMS}: combine a layer's "
                             f"channels as LAYER[C1,C2,...])")
    for part in parts:
        m = _TERM.match(part)
        if not m:
            raise ZoomdreamError(
                f"cannot read layer spec '{part.strip()}' in '{spec}' "
                f"(write LAYER, LAYER:WEIGHT or LAYER[CHANNEL,...]:WEIGHT, comma-separated)"
            )
        name, channels, weight = m.groups()
        try:
            w = float(weight) if weight is not None else 1.0
        except ValueError:
            raise ZoomdreamError(f"layer weight '{weight}' in '{spec}' is not a number (e.g. {name}:0.5)") from None
        chans = tuple(int(c) for c in channels.split(",") if c.strip()) if channels else None
        terms.append(LayerTerm(name, w, chans))
    return tuple(terms)


@dataclass(frozen=True)
class Objective:
    """Sum over terms of weight * activation statistic, plus guide matching, minus tv * total variation.

    ``loss="square"`` (mean squared activation, the Keras example) rewards strong responses of either sign
    and gives the clearest shapes on EfficientNet-Lite; ``"mean"`` is the TensorFlow tutorial's.
    Each term is a mean over positions and channels, so a big layer does not outweigh a small one.
    """

    terms: tuple[LayerTerm, ...]
    loss_kind: str = "square"
    tv: float = 0.0
    guide_features: dict[str, np.ndarray] = field(default_factory=dict, compare=False)  # layer -> (N, C)

    def __post_init__(self):
        if self.loss_kind not in LOSSES:
            raise ZoomdreamError(f"unknown loss '{self.loss_kind}' (choose one of: {', '.join(LOSSES)})")
        if not self.terms:
            raise ZoomdreamError("no layers given (e.g. --layers block10:1,block12:1)")

    @property
    def layers(self) -> list[str]:
        """Distinct layers in first-use order: the feature model's outputs."""
        return list(dict.fromkeys(t.layer for t in self.terms))

    def weights(self) -> np.ndarray:
        return np.array([t.weight for t in self.terms], dtype=np.float32)

    def with_guide(self, features: dict[str, np.ndarray]) -> "Objective":
        return Objective(self.terms, self.loss_kind, self.tv, features)

    def loss(self, features: list, weights, image):
        """Scalar loss for one tile: ``features`` align with ``self.layers``, ``weights`` with ``terms``."""
        from keras import ops

        by_layer = dict(zip(self.layers, features))
        total = 0.0
        for i, term in enumerate(self.terms):
            act = ops.cast(by_layer[term.layer], "float32")
            if term.channels:
                act = ops.take(act, list(term.channels), axis=-1)
            if term.layer in self.guide_features:
                value = _guide_match(act, self.guide_features[term.layer], term.channels)
            elif self.loss_kind == "square":
                value = ops.mean(ops.square(act))
            else:
                value = ops.mean(act)
            total = total + weights[i] * value
        if self.tv:
            total = total - self.tv * total_variation(image)
        return total


def _guide_match(act, guide: np.ndarray, channels):
    """Google's guided dream: each position moves toward the guide feature it already resembles most."""
    from keras import ops

    if channels:
        guide = guide[:, list(channels)]
    flat = ops.reshape(act, (-1, act.shape[-1]))
    dots = ops.matmul(flat, ops.transpose(ops.convert_to_tensor(guide, "float32")))
    return ops.mean(ops.max(dots, axis=1)) / guide.shape[1]


def total_variation(image):
    """Mean absolute difference between neighbours: penalising it suppresses pixel-scale noise."""
    from keras import ops

    dy = ops.abs(image[1:, :, :] - image[:-1, :, :])
    dx = ops.abs(image[:, 1:, :] - image[:, :-1, :])
    return ops.mean(dy) + ops.mean(dx)


def make_objective(layers: str | tuple[LayerTerm, ...], loss: str = "square", tv: float = 0.0) -> Objective:
    terms = parse_layers(layers) if isinstance(layers, str) else tuple(layers)
    return Objective(terms, loss, tv)


def guide_features(feature_model: keras.Model, layers: list[str], guide: np.ndarray) -> dict[str, np.ndarray]:
    """Features of a guide image ([-1, 1], HxWx3) per layer, flattened to (positions, channels)."""
    from keras import ops

    outputs = feature_model(guide[None].astype(np.float32), training=False)
    if not isinstance(outputs, (list, tuple)):
        outputs = [outputs]
    return {
        layer: np.asarray(ops.convert_to_numpy(ops.cast(out, "float32"))).reshape(-1, out.shape[-1])
        for layer, out in zip(layers, outputs)
    }
