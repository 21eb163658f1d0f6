"""The segment stage's views (:func:`compare.pipeline.segment.segment`): a shrunk image read in its eight orientations."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from compare.pipeline.colour import Colour
from compare.pipeline.segment import VIEWS_MAX_FACTOR, segment


class _Recording:
    """A segmenter that records which of its readers (itself, or a ``with_views`` twin) predicted."""

    def __init__(self, views=False, log=None):
        self.views, self.log = views, [] if log is None else log

    def with_views(self, tta):
        return _Recording(tta, self.log)

    def predict_proba(self, image: np.ndarray) -> np.ndarray:
        self.log.append(self.views)
        return np.full(image.shape[:2], 0.25 if self.views else 0.75, np.float32)


def _colour(side: int = 120) -> Colour:
    rng = np.random.default_rng(0)
    return Colour(balanced=rng.integers(0, 256, (side, side, 3), dtype=np.uint8),
                  background=np.array([240.0, 235.0, 230.0]), stain_map=None)


@pytest.mark.parametrize("factor, views, expected", [
    (VIEWS_MAX_FACTOR, True, ["d4"]), (1.0 / 3.0, True, ["d4"]), (0.6, True, [False]), (1.0, True, [False]),
    (VIEWS_MAX_FACTOR, False, [False]),
])
def test_the_eight_views_are_asked_for_at_or_below_the_bound_only(factor, views, expected):
    segmenter = _Recording()
    result = segment(_colour(), factor, segmenter, views=views)
    assert segmenter.log == expected
    assert result.probability.shape == result.image.shape[:2]
    assert result.probability.mean() == pytest.approx(0.25 if expected == ["d4"] else 0.75)


def test_a_shrunk_image_is_read_here_even_with_map_blocks():
    segmenter, blocks = _Recording(), []

    def map_blocks(crops):
        for crop in crops:
            blocks.append(crop.shape)
            yield np.zeros(crop.shape[:2], np.float32)

    segment(_colour(), 0.4, segmenter, views=True, map_blocks=map_blocks)
    assert segmenter.log == ["d4"] and blocks == []


def test_predict_passes_the_registry_flag(threshold_model_dir, monkeypatch):
    import compare.pipeline.model as pipeline_model
    from compare.pipeline.segmenters import REGISTRY
    from tests.synthetic import smear

    image, _ = smear((120, 160), [(50, 50), (70, 115)], radius=18, seed=4, n_red=8)
    asked = {}
    for flag in (False, True):
        monkeypatch.setitem(REGISTRY, "threshold", dataclasses.replace(REGISTRY["threshold"], views_when_shrunk=flag))
        model = pipeline_model.WBCModel.load(threshold_model_dir)
        log = []
        monkeypatch.setattr(type(model.segmenter_), "with_views",
                            lambda self, tta, log=log: log.append(tta) or self, raising=False)
        model.predict(image, scale=0.5, cells=False)
        asked[flag] = log
    assert asked == {False: [], True: ["d4"]}


def test_only_the_unets_read_shrunk_images_in_views():
    from compare.pipeline.segmenters import REGISTRY

    assert {name for name, spec in REGISTRY.items() if spec.views_when_shrunk} == {"unet", "unet-paper"}
