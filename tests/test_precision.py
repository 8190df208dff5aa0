"""``--precision auto``: float32 without native bfloat16; elsewhere the faster of the two, timed once."""
import json

import pytest

from zoomdream import backend, precision


@pytest.fixture
def cpu(monkeypatch, tmp_path):
    """A CPU-only machine whose bfloat16 support the test sets, with an empty verdict cache."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(backend, "has_accelerator", lambda: False)

    def with_bfloat16(native):
        monkeypatch.setattr(backend, "native_bfloat16", lambda: native)

    return with_bfloat16


def test_explicit_precision_is_kept(cpu):
    cpu(True)
    assert precision.resolve("float32", "efficientnet-lite0") == "float32"
    assert precision.resolve("bfloat16", "efficientnet-lite0") == "bfloat16"


def test_auto_without_native_bfloat16_is_float32_without_timing(cpu, monkeypatch):
    cpu(False)
    monkeypatch.setattr(precision, "probe", lambda *a, **k: pytest.fail("probed a CPU without bfloat16"))
    assert precision.resolve("auto", "efficientnet-lite0") == "float32"


def test_auto_times_once_per_model_and_keeps_the_verdict(cpu, monkeypatch):
    cpu(True)
    calls = []

    def fake_probe(model, weights=None):
        calls.append(model)
        return {"precision": "bfloat16" if model == "inception_v3" else "float32", "seconds_per_step": {}}

    monkeypatch.setattr(precision, "probe", fake_probe)
    assert precision.resolve("auto", "efficientnet-lite0") == "float32"
    assert precision.resolve("auto", "inception_v3", "random") == "bfloat16"
    assert precision.resolve("auto", "efficientnet-lite0") == "float32"
    assert calls == ["efficientnet-lite0", "inception_v3"]
    assert len(json.loads(precision.cache_path().read_text())) == 2


def test_probe_times_both_and_picks_the_faster():
    result = precision.probe("efficientnet-lite0", size=48, steps=1)
    seconds = result["seconds_per_step"]
    assert set(seconds) == {"float32", "bfloat16"} and all(s > 0 for s in seconds.values())
    assert result["precision"] == min(seconds, key=seconds.get)
