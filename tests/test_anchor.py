"""Tests for the nuclear stain anchor (:mod:`stain.anchor`) on synthetic smears."""

from __future__ import annotations

import numpy as np
import pytest

from stain.anchor import GAIN_RANGE, anchor_matrix, apply_density_map, nucleus_density
from stain.normalise import angle_deg, background_colour
from tests.test_stain import synthetic_smear

BACKGROUND = np.array([236.0, 238.0, 228.0])


def _unit(v):
    return np.asarray(v, float) / np.linalg.norm(v)


def test_nucleus_density_is_the_nucleus_colour():
    img, _ = synthetic_smear()
    od = nucleus_density(img, BACKGROUND)
    expected = -np.log((np.array([95.0, 40.0, 150.0]) + 1) / (BACKGROUND + 1))
    assert od.shape == (3,)
    assert angle_deg(_unit(od), _unit(expected)) < 3
    assert np.linalg.norm(od) == pytest.approx(np.linalg.norm(expected), rel=0.1)
    assert nucleus_density(np.zeros((8, 8, 3), np.uint8), BACKGROUND) is None


@pytest.mark.parametrize("observed", [(0.9, 1.2, 0.6), (0.3, 0.5, 0.2), (2.0, 1.0, 0.1)])
def test_anchor_matrix_turns_and_scales_the_observed_vector_onto_the_reference(observed):
    reference = np.array([0.9, 1.8, 0.4])
    observed = np.array(observed)
    m = anchor_matrix(observed, reference)
    mapped = m @ observed
    assert angle_deg(_unit(mapped), _unit(reference)) < 1e-6
    ratio = np.clip(np.linalg.norm(reference) / np.linalg.norm(observed), *GAIN_RANGE)
    assert np.linalg.norm(mapped) == pytest.approx(ratio * np.linalg.norm(observed))
    # Only the turn: lengths kept; only the gain: direction kept.
    turned = anchor_matrix(observed, reference, gain=False)
    assert np.allclose(turned @ turned.T, np.eye(3))
    scaled = anchor_matrix(observed, reference, rotate=False)
    assert angle_deg(_unit(scaled @ observed), _unit(observed)) < 1e-6


def test_anchor_matrix_is_the_identity_without_an_observation():
    assert np.array_equal(anchor_matrix(None, np.ones(3)), np.eye(3))
    assert np.array_equal(anchor_matrix(np.zeros(3), np.ones(3)), np.eye(3))


def test_apply_density_map_keeps_the_background_and_inverts():
    img, _ = synthetic_smear()
    assert np.array_equal(apply_density_map(img, BACKGROUND, np.eye(3)), img)
    m = anchor_matrix(np.array([0.5, 1.2, 0.4]), np.array([0.9, 1.8, 0.4]))
    out = apply_density_map(img, BACKGROUND, m)
    assert out.shape == img.shape and out.dtype == np.uint8
    assert np.all(np.abs(background_colour(out) - BACKGROUND) <= 3)
    # The inverse map brings the stained pixels back up to rounding.
    back = apply_density_map(out, BACKGROUND, np.linalg.inv(m))
    stained = img.astype(int).sum(-1) < 600
    assert np.percentile(np.abs(back.astype(int) - img)[stained], 95) <= 3


def test_anchoring_undoes_a_brown_restain():
    """A rapid-stain-like turn of the haematoxylin is undone: the nuclei regain the training colour."""
    from stain.looks import restain

    img, mask = synthetic_smear()
    reference = nucleus_density(img, BACKGROUND)
    brown = restain(img, haematoxylin=(0.45, 0.6, 0.66), scale_h=0.8, background=tuple(BACKGROUND))
    observed = nucleus_density(brown, BACKGROUND)
    assert angle_deg(_unit(observed), _unit(reference)) > 8
    fixed = apply_density_map(brown, BACKGROUND, anchor_matrix(observed, reference))
    after = nucleus_density(fixed, BACKGROUND)
    assert angle_deg(_unit(after), _unit(reference)) < 3
    nucleus = np.zeros_like(mask)
    nucleus[np.hypot(*np.mgrid[-80:80, -80:80]) < 15] = True
    assert np.abs(fixed[nucleus].astype(int) - img[nucleus]).mean() < np.abs(brown[nucleus].astype(int)
                                                                            - img[nucleus]).mean() / 2


@pytest.mark.parametrize("gain", [0.7, 1.0 + 1e-3, 1.3, 1.6])
def test_apply_density_map_with_a_gain_alone_follows_the_formula(gain):
    # A diagonal map takes the per-channel lookup path; every level of every
    # channel must come out as the module formula gives it, to rounding.
    rng = np.random.default_rng(3)
    img = rng.integers(0, 256, (64, 96, 3), dtype=np.uint8)
    img[0, :256 % 96] = 255
    out = apply_density_map(img, BACKGROUND, np.eye(3) * gain)
    od = np.maximum(-np.log((img + 1.0) / (BACKGROUND + 1.0)), 0.0)
    expected = np.clip(np.rint((BACKGROUND + 1.0) * np.exp(-gain * od) - 1.0), 0, 255)
    assert out.dtype == np.uint8
    assert np.abs(out.astype(int) - expected).max() <= 1
    # The same map with a negligible off-diagonal term takes the general path and agrees.
    nearly = np.eye(3) * gain
    nearly[0, 1] = 1e-9
    assert np.abs(apply_density_map(img, BACKGROUND, nearly).astype(int) - out).max() <= 1


def test_apply_density_map_rejects_non_rgb():
    with pytest.raises(ValueError, match="RGB"):
        apply_density_map(np.zeros((4, 4), np.uint8), BACKGROUND, np.eye(3))


def test_the_dark_rim_of_the_field_edge_is_not_taken_for_nuclei():
    """Dark olive pixels fading into the black field-of-view edge are darker than the nucleus but are not it."""
    from scipy import ndimage as ndi

    from stain.normalise import darkest_lit_pixels, stain_direction

    img, _ = synthetic_smear(200, black_edge=True)
    black = img.astype(int).sum(-1) < 30
    rim = ~black & (ndi.distance_transform_edt(~black) <= 4)  # 4 px wide
    img[rim] = (84, 72, 38)
    dark = darkest_lit_pixels(img)
    assert len(dark) and not np.any(np.all(dark == (84, 72, 38), axis=1))
    nucleus = -np.log((np.array([95.0, 40.0, 150.0]) + 1) / 256.0)
    assert angle_deg(stain_direction(img), _unit(nucleus)) < 5
