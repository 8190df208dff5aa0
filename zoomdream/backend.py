"""The only backend-specific code: compiling the dream step and taking an input gradient.

Everything else is written in ``keras.ops`` and runs on whichever backend Keras was started with
(``KERAS_BACKEND=tensorflow``, the default, or ``jax`` for GPUs where TensorFlow is absent).

``compile_step(feature_model, step)`` turns a pure function ``step(primitives, *tensors)`` into a compiled
callable ``(*tensors) -> outputs``, where ``primitives`` holds the three things keras.ops cannot say alike
on every backend: calling the model, an input gradient, and a sequential map over tiles (memory bounded
by the tile, one copy of the model in the compiled program however many tiles there are):

- TensorFlow: ``tf.function`` around the step, the model called directly, gradients by ``GradientTape``,
  ``tf.map_fn`` over the tiles. With TensorFlow's own (Eigen) kernels two tiles are in flight (on 2 cores
  that keeps both busy through the small ops, faster than one at a time at little more memory; figures: the
  Benchmarks page). With oneDNN (TensorFlow's default on x86, kept on AVX-512 machines) tiles go one
  at a time: two concurrent iterations of the same oneDNN kernels crash the process (segmentation fault
  within a few dozen dreams, TensorFlow 2.21 on an AVX-512 BF16 CPU). One trace per distinct input shape,
  reused for every later call (octaves and frames).
- JAX: ``jax.jit`` with the model's weights passed as arguments to ``stateless_call`` (not baked into
  the program as constants), gradients by ``jax.value_and_grad``, ``jax.lax.map``.
"""
from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:  # Keras starts its backend on import: only when a name or step is asked for
    import keras


@dataclass(frozen=True)
class Primitives:
    call_model: Callable  # batch -> list of feature tensors
    value_and_grad: Callable  # (fn, x) -> (fn(x), d fn / d x)
    map_sequential: Callable  # (fn, xs) -> stacked fn(x) for x in xs, few at a time; fn gives 2 float32s


def name() -> str:
    import keras

    return keras.backend.backend()


def compile_step(feature_model: keras.Model, step: Callable) -> Callable:
    if name() == "tensorflow":
        return _compile_tensorflow(feature_model, step)
    if name() == "jax":
        return _compile_jax(feature_model, step)
    raise RuntimeError(f"zoomdream supports the tensorflow and jax Keras backends, not {name()}")


def compile_function(fn: Callable) -> Callable:
    """``fn`` of backend tensors compiled into one program (traced once per input shape): eager ops would
    each be a dispatch of their own, and a warp made of them cost more than the dream."""
    if name() == "jax":
        import jax

        return jax.jit(fn)
    import tensorflow as tf

    return tf.function(fn)


def _as_list(outputs):
    return list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]


def _compile_tensorflow(feature_model, step):
    import tensorflow as tf

    def value_and_grad(fn, x):
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch(x)
            value = fn(x)
        return value, tape.gradient(value, x)

    in_flight = 1 if onednn_enabled() else 2

    def map_sequential(fn, xs):
        return tf.map_fn(fn, xs, parallel_iterations=in_flight, fn_output_signature=(tf.float32, tf.float32))

    primitives = Primitives(lambda x: _as_list(feature_model(x, training=False)), value_and_grad, map_sequential)
    return tf.function(lambda *args: step(primitives, *args), reduce_retracing=False)


def _compile_jax(feature_model, step):
    import jax

    weights = ([v.value for v in feature_model.trainable_variables],
               [v.value for v in feature_model.non_trainable_variables])

    def run(weights, *args):
        trainable, non_trainable = weights

        def call_model(x):
            outputs, _ = feature_model.stateless_call(trainable, non_trainable, x, training=False)
            return _as_list(outputs)

        primitives = Primitives(call_model, lambda fn, x: jax.value_and_grad(fn)(x), jax.lax.map)
        return step(primitives, *args)

    compiled = jax.jit(run)
    return lambda *args: compiled(weights, *args)


def onednn_enabled() -> bool:
    """Whether TensorFlow runs its CPU kernels through oneDNN (its default on x86 Linux)."""
    return os.environ.get("TF_ENABLE_ONEDNN_OPTS", "1").strip().lower() not in ("0", "false", "off")


def _cpuinfo(field: str) -> str:
    """The first value of a /proc/cpuinfo field ('' where there is no such file or field)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(field):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def cpu_flags() -> set[str]:
    return set(_cpuinfo("flags").split())


def cpu_name() -> str:
    return _cpuinfo("model name") or platform.processor() or "unknown CPU"


def has_accelerator() -> bool:
    if name() == "jax":
        import jax

        return jax.default_backend() != "cpu"
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


def native_bfloat16() -> bool:
    """Whether this CPU computes bfloat16 itself (AVX-512 BF16 or AMX); elsewhere TensorFlow emulates it."""
    return bool(cpu_flags() & {"avx512_bf16", "amx_bf16"})
