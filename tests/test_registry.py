"""Every registered segmenter follows scikit-learn's estimator rules, without training anything."""

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from compare.pipeline.segmenters import REGISTRY, make_segmenter

NAMES = list(REGISTRY)


def test_registry_lists_the_three_classical_classifiers():
    assert {"threshold", "rf", "svm", "mlp", "unet", "unet-paper"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_clone_gives_an_equal_unfitted_copy(name):
    seg = make_segmenter(name, random_state=3)
    copy = clone(seg)
    assert type(copy) is type(seg) and copy is not seg
    params, copied = seg.get_params(deep=False), copy.get_params(deep=False)
    assert params.keys() == copied.keys()
    for key, value in params.items():
        # Nested estimators are cloned (new objects, same settings); the rest is carried over.
        if hasattr(value, "get_params"):
            assert copied[key] is not value and repr(copied[key]) == repr(value), key
        else:
            assert copied[key] == value, key
    assert params["random_state"] == 3
    assert set(seg.get_params(deep=False)) <= set(seg.get_params(deep=True))


@pytest.mark.parametrize("name", NAMES)
def test_set_params_changes_what_get_params_reports(name):
    seg = make_segmenter(name)
    assert seg.set_params(random_state=11) is seg
    assert seg.get_params()["random_state"] == 11
    assert clone(seg).get_params()["random_state"] == 11


@pytest.mark.parametrize("name", NAMES)
def test_unfitted_segmenter_refuses_to_predict_or_save(name, tmp_path):
    seg = make_segmenter(name)
    with pytest.raises(NotFittedError, match="not fitted"):
        seg.predict_proba(np.zeros((16, 16, 3), np.uint8))
    with pytest.raises(NotFittedError, match="not fitted"):
        seg.save(tmp_path / "model")
    assert not (tmp_path / "model").exists()


IMAGE = np.zeros((8, 8, 3), np.uint8)
MASK = np.zeros((8, 8), bool)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(
    "images, masks, message",
    [
        ([], [], "fit got 0 images; pass at least"),
        ([IMAGE, IMAGE], [MASK], "2 images but 1 masks"),
        ([IMAGE.astype(np.float32)] * 2, [MASK] * 2, r"images\[0\] must be an \(H, W, 3\) uint8 RGB array"),
        ([IMAGE[..., 0]] * 2, [MASK] * 2, r"images\[0\] must be an \(H, W, 3\) uint8 RGB array"),
        ([IMAGE] * 2, [MASK.astype(np.uint8)] * 2, r"masks\[0\] must be an \(H, W\) bool array"),
        ([IMAGE] * 2, [MASK, MASK[:, :6]], r"masks\[1\] has shape \(8, 6\) but images\[1\] is \(8, 8\)"),
    ],
)
def test_fit_validates_inputs_with_one_set_of_rules(name, images, masks, message):
    with pytest.raises(ValueError, match=message):
        make_segmenter(name).fit(images, masks)
