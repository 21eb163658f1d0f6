"""The device and threads Keras trains and predicts with."""

from __future__ import annotations

import logging
import os

__all__ = ["configure_threads", "describe_device"]

log = logging.getLogger(__name__)


def configure_threads() -> None:
    """Use the runtime's thread count (:func:`tiling.runtime.resolve_n_jobs`; TensorFlow backend only).

    TensorFlow fixes its thread pools when it first runs an op, so this is a
    no-op (with a debug log line) if that has already happened.
    """
    import keras

    if keras.backend.backend() != "tensorflow":
        return
    import tensorflow as tf

    # Retracing warnings come from predicting images of several sizes, which
    # is expected here; they would only clutter the progress output.
    tf.get_logger().setLevel(logging.ERROR)
    from tiling.runtime import resolve_n_jobs

    n = resolve_n_jobs()
    try:
        tf.config.threading.set_intra_op_parallelism_threads(n)
        # Independent ops of one U-Net step are few; more than two inter-op
        # threads only compete with the intra-op ones for the same cores.
        tf.config.threading.set_inter_op_parallelism_threads(min(n, 2))
    except RuntimeError:
        log.debug("TensorFlow threads already configured; leaving them.")


def describe_device() -> str:
    """Name the device Keras computes on, e.g. ``"CPU (tensorflow, 2 threads)"`` or ``"GPU:0 NVIDIA H100 (jax)"``."""
    import keras

    backend = keras.backend.backend()
    try:
        if backend == "tensorflow":
            import tensorflow as tf

            gpus = tf.config.list_physical_devices("GPU")
            if gpus:
                details = tf.config.experimental.get_device_details(gpus[0])
                return f"GPU:0 {details.get('device_name', gpus[0].name)} (tensorflow, {len(gpus)} GPU(s))"
        elif backend == "jax":
            import jax

            dev = jax.devices()[0]
            if dev.platform != "cpu":
                return f"GPU:0 {dev.device_kind} (jax)"
        elif backend == "torch":
            import torch

            if torch.cuda.is_available():
                return f"GPU:0 {torch.cuda.get_device_name(0)} (torch)"
    except Exception as exc:  # noqa: BLE001 -- a failed probe must not stop training
        log.debug("device probe failed: %s", exc)
    return f"CPU ({backend}, {os.cpu_count()} cores)"
