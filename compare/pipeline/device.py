"""Where the U-Net runs: choosing and reporting the compute device and the machine.

The classical segmenters always run on the CPU.  The U-Net runs on whatever
Keras backend is active: TensorFlow by default (``tensorflow-cpu`` on x86-64,
so CPU only), or JAX, which with the ``gpu`` install extra
(``pip install -e ".[gpu]"``, CUDA 12 wheels on Linux) uses an NVIDIA GPU.
The backend is read by Keras once, when it is first imported, so the choice
is made here before any model is loaded.
"""

from __future__ import annotations

import os
import platform
import sys
from typing import Any

__all__ = ["DEVICES", "select_device", "current_device", "env_facts"]

DEVICES = ("auto", "cpu", "gpu")


def _keras_loaded() -> bool:
    return "keras" in sys.modules


def select_device(device: str = "auto") -> str:
    """Prepare the process for ``device`` before Keras is imported; returns what will be used.

    Parameters
    ----------
    device : {"auto", "cpu", "gpu"}
        ``cpu`` hides every GPU from the backends; ``gpu`` requires one (the
        JAX backend is chosen when ``KERAS_BACKEND`` is unset, since the
        default TensorFlow build here is CPU-only); ``auto`` takes a GPU
        when the active backend sees one.

    Returns
    -------
    str
        ``"cpu"`` or ``"gpu:NAME"``, as :func:`current_device` reports it.

    Raises
    ------
    ValueError
        For an unknown device, or ``gpu`` when no GPU is visible.
    """
    if device not in DEVICES:
        raise ValueError(f"--device must be one of {', '.join(DEVICES)}, not {device!r}.")
    if device == "cpu" and not _keras_loaded():
        # Both TensorFlow and JAX read this when they start.
        os.environ["CUDA_VISIBLE_DEVICES"] = "-1"
        os.environ.setdefault("JAX_PLATFORMS", "cpu")
    if device == "gpu" and not _keras_loaded():
        os.environ.setdefault("KERAS_BACKEND", "jax")
    if device != "gpu":
        return current_device()
    import keras  # noqa: F401  (loads the backend, so the GPU check below asks it)

    used = current_device()
    if not used.startswith("gpu"):
        raise ValueError("--device gpu: no GPU is visible to the Keras backend "
                         f"({os.environ.get('KERAS_BACKEND', 'tensorflow')}); install the GPU extra with "
                         "pip install -e \".[gpu]\" on a Linux machine with an NVIDIA driver, or use --device cpu.")
    return used


def current_device() -> str:
    """The device the active Keras backend computes on: ``"cpu"`` or ``"gpu:NAME"``.

    ``"cpu"`` without asking when Keras has not been imported: then no U-Net
    was built or loaded, and the classical segmenters run on the CPU.
    Otherwise the backend's array library is asked.
    """
    if not _keras_loaded():
        return "cpu"
    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    try:
        if backend == "jax":
            import jax

            gpus = [d for d in jax.devices() if d.platform == "gpu"]
            return f"gpu:{gpus[0].device_kind}" if gpus else "cpu"
        if backend == "torch":
            import torch

            return f"gpu:{torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else "cpu"
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        return f"gpu:{gpus[0].name}" if gpus else "cpu"
    except Exception:  # no backend installed or no driver: the CPU is what runs
        return "cpu"


def env_facts() -> dict[str, Any]:
    """Python, platform, CPU, Keras backend, device and package versions of this process."""
    import importlib.metadata as md

    versions = {}
    for dist in ("numpy", "scipy", "scikit-image", "scikit-learn", "pandas", "keras", "tensorflow-cpu",
                 "tensorflow", "jax", "torch", "skops", "albumentations", "pillow"):
        try:
            versions[dist] = md.version(dist)
        except md.PackageNotFoundError:
            pass
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "cpu_count": os.cpu_count(),
        "keras_backend": os.environ.get("KERAS_BACKEND", "tensorflow"),
        "device": current_device(),
        "packages": versions,
    }
