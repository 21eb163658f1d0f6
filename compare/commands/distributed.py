"""Spreading ``compare predict`` over a Dask distributed cluster.

One task per image; a worker loads the model once and keeps it.  An image
larger than :data:`compare.pipeline.blocks.WHOLE` pixels a side is spread
block by block instead (:meth:`compare.pipeline.model.WBCModel.segment_block`),
and its instances are separated on the calling machine (the one step that
needs the whole image).  Input paths and the model folder must
be readable by the workers (shared storage); results come back and are
written by the caller, so they equal a local run's.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from compare.io.atomic import safe_stem
from compare.pipeline.blocks import WHOLE
from compare.pipeline.model import WBCModel, load_model

__all__ = ["distributed_results"]


class _WorkerModels:
    """The models a worker process has loaded, by folder; loaded once each."""

    def __init__(self) -> None:
        self._models: dict[str, WBCModel] = {}
        self._lock = threading.Lock()

    def get(self, folder: str) -> WBCModel:
        with self._lock:
            model = self._models.get(folder)
            if model is None:
                model = self._models[folder] = load_model(folder)
            return model


#: Per worker process: Dask runs tasks in threads of one process, which share it.
_WORKER_MODELS = _WorkerModels()


def _worker_predict(model_dir: str, path: str, options: dict[str, Any]) -> Any:
    """The task run on a Dask worker: predict one image file."""
    from compare.commands.predict_file import predict_path

    return predict_path(_WORKER_MODELS.get(model_dir), path, **options)


def _worker_block(model_dir: str, crop: np.ndarray) -> np.ndarray:
    """The task run on a Dask worker for one block of a huge image."""
    return _WORKER_MODELS.get(model_dir).segment_block(crop)


def _cluster_map_blocks(client: Any, model_dir: str) -> Callable[[Iterator[np.ndarray]], Iterator[np.ndarray]]:
    """A ``map_blocks`` that predicts blocks on the cluster, in order.

    At most two blocks per worker thread are in flight, so neither this
    machine nor the cluster holds more than a few blocks of a huge image.
    """
    window = max(2, 2 * sum(client.nthreads().values()))

    def map_blocks(crops: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
        pending: deque = deque()
        for crop in crops:
            pending.append(client.submit(_worker_block, model_dir, crop, pure=False))
            if len(pending) >= window:
                future = pending.popleft()
                yield future.result()
                future.release()
        while pending:
            future = pending.popleft()
            yield future.result()
            future.release()

    return map_blocks


def _image_size(path: Path) -> tuple[int, int] | None:
    """``(height, width)`` from the file's header, or None when it cannot be read."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            return img.size[1], img.size[0]
    except Exception:  # reading the image reports the problem properly later
        return None


def distributed_results(address: str, model: WBCModel, files: Sequence[Path], indices: Sequence[int],
                        options: dict[str, Any]) -> Iterator[tuple[int, Any]]:
    """Yield ``(index, (Prediction, FileFacts) or exception)`` as the cluster finishes images.

    Parameters
    ----------
    address : str
        The scheduler's address, e.g. ``tcp://host:8786``.
    model : WBCModel
        Loaded from a folder (:func:`compare.pipeline.model.load_model`);
        the workers load it from the same folder (``model.manifest_.folder``),
        and it predicts the huge images here.
    files : sequence of Path
    indices : sequence of int
        Which of ``files`` to predict.
    options : dict
        Keyword arguments of :func:`compare.commands.predict_file.predict_path`.
    """
    from distributed import Client, as_completed

    from compare.commands.predict_file import predict_path

    with Client(address) as client:
        model_arg = str(model.manifest_.folder)
        futures = {}
        huge = []
        for i in indices:
            f = files[i]
            size = _image_size(f)
            if size is not None and max(size) > WHOLE:
                huge.append(i)
                continue
            futures[client.submit(_worker_predict, model_arg, str(f.resolve()), options,
                                  pure=False, key=f"wbc-predict-{i}-{safe_stem(f.stem)}")] = i
        map_blocks = _cluster_map_blocks(client, model_arg)
        for i in huge:
            try:
                yield i, predict_path(model, files[i], map_blocks=map_blocks, **options)
            except Exception as exc:  # one image's failure is reported, the rest go on
                yield i, exc
        for future in as_completed(futures):
            index = futures[future]
            try:
                yield index, future.result()
            except Exception as exc:
                yield index, exc
            future.release()
