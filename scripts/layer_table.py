"""Write zoomdream/layers.py: each built-in backbone's dreamable layers and their output shapes at 512x512,
measured on the built networks, so `zoomdream models` and layer checks need no TensorFlow.

    python scripts/layer_table.py      # after adding a backbone or changing a layer pattern

tests/test_models.py checks the table against the networks."""
from pathlib import Path

from zoomdream.models import BACKBONES, measure_layers

HEADER = '''"""Each built-in backbone's dreamable layers and their output shapes (height, width, channels) for a
512x512 input, measured on the built networks by `python scripts/layer_table.py` (which writes this file) and
checked against them by tests/test_models.py. `zoomdream models` lists them and jobs' layers are checked
against them without starting TensorFlow."""

LAYERS: dict[str, dict[str, tuple[int, int, int]]] = {
'''


def main() -> None:
    lines = [HEADER]
    for name, backbone in BACKBONES.items():
        lines.append(f'    "{name}": {{\n')
        lines += [f'        "{layer}": {shape!r},\n' for layer, shape in measure_layers(backbone)]
        lines.append("    },\n")
    lines.append("}\n")
    path = Path(__file__).resolve().parent.parent / "zoomdream" / "layers.py"
    path.write_text("".join(lines))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
