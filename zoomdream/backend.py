"""The only backend-specific code: compiling the dream step and taking an input gradient.

Everything else is written in ``keras.ops`` and runs on whichever backend Keras was started with
(``KERAS_BACKEND=tensorflow``, the default, or ``jax`` for GPUs where TensorFlow is absent).

``compile_step(feature_model, step)`` turns a pure function
``step(call_model, value_and_grad, *tensors)`` into a compiled callable ``(*tensors) -> outputs``:

- TensorFlow: ``tf.function`` around the step, the model called directly, gradients by ``GradientTape``.
  One trace per distinct input shape, reused for every later call (octaves and frames).
- JAX: ``jax.jit`` with the model's weights passed as arguments to ``stateless_call`` (not baked into
  the program as constants), gradients by ``jax.value_and_grad``.
"""
from __future__ import annotations

from typing import Callable

import keras


def name() -> str:
    return keras.backend.backend()


def compile_step(feature_model: keras.Model, step: Callable) -> Callable:
    if name() == "tensorflow":
        return _compile_tensorflow(feature_model, step)
    if name() == "jax":
        return _compile_jax(feature_model, step)
    raise RuntimeError(f"zoomdream supports the tensorflow and jax Keras backends, not {name()}")


def _as_list(outputs):
    return list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]


def _compile_tensorflow(feature_model, step):
    import tensorflow as tf

    def call_model(x):
        return _as_list(feature_model(x, training=False))

    def value_and_grad(fn, x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            value = fn(x)
        return value, tape.gradient(value, x)

    compiled = tf.function(lambda *args: step(call_model, value_and_grad, *args), reduce_retracing=False)
    return compiled


def _compile_jax(feature_model, step):
    import jax

    weights = ([v.value for v in feature_model.trainable_variables],
               [v.value for v in feature_model.non_trainable_variables])

    def run(weights, *args):
        trainable, non_trainable = weights

        def call_model(x):
            outputs, _ = feature_model.stateless_call(trainable, non_trainable, x, training=False)
            return _as_list(outputs)

        return step(call_model, lambda fn, x: jax.value_and_grad(fn)(x), *args)

    compiled = jax.jit(run)
    return lambda *args: compiled(weights, *args)


def cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def has_accelerator() -> bool:
    if name() == "jax":
        import jax

        return jax.default_backend() != "cpu"
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


def resolve_precision(requested: str = "auto") -> str:
    """``auto``: bfloat16 on GPUs and on CPUs with native bfloat16 (AVX-512 BF16 or AMX), else float32.

    Where the CPU lacks those instructions TensorFlow emulates bfloat16 convolutions, about 9x slower.
    """
    if requested != "auto":
        return requested
    if has_accelerator() or cpu_flags() & {"avx512_bf16", "amx_bf16"}:
        return "bfloat16"
    return "float32"
