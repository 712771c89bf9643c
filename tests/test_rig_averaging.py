"""Robust rotation averaging (metapose_geom.rig.averaging) against known rigs."""

import numpy as np
import pytest

from metapose_geom.geometry import rodrigues_to_matrix
from metapose_geom.rig.averaging import average_rig_rotations, chordal_mean, geodesic_median, rotation_angles


def random_rotations(rng, count, scale=np.pi):
    axis = rng.normal(size=(count, 3))
    axis /= np.linalg.norm(axis, axis=1, keepdims=True)
    return rodrigues_to_matrix(axis * rng.uniform(0, scale, (count, 1)))


def noisy(rng, rotation, degrees):
    """rotation (..., 3, 3) times a random rotation of about ``degrees`` (normal per axis)."""
    shape = rotation.shape[:-2]
    return rotation @ rodrigues_to_matrix(np.radians(degrees) * rng.normal(size=shape + (3,)))


def test_rotation_angles_of_known_rotations():
    angles = np.array([0.0, 1e-9, 0.3, np.pi / 2, np.pi - 1e-7, np.pi])
    axis = np.array([0.0, 0.6, 0.8])
    matrices = rodrigues_to_matrix(angles[:, None] * axis)
    np.testing.assert_allclose(rotation_angles(matrices), angles, atol=1e-7)


def test_means_of_identical_rotations_are_that_rotation():
    rng = np.random.default_rng(0)
    rotation = random_rotations(rng, 1)[0]
    same = np.repeat(rotation[None], 5, axis=0)
    np.testing.assert_allclose(chordal_mean(same), rotation, atol=1e-12)
    np.testing.assert_allclose(geodesic_median(same), rotation, atol=1e-9)


def test_geodesic_median_ignores_a_minority_of_outliers_where_the_chordal_mean_tilts():
    rng = np.random.default_rng(1)
    centre = random_rotations(rng, 1)[0]
    inliers = noisy(rng, np.repeat(centre[None], 40, axis=0), 0.5)
    outliers = random_rotations(rng, 8)
    sample = np.concatenate([inliers, outliers])
    median_error = np.degrees(rotation_angles(geodesic_median(sample).T @ centre))
    mean_error = np.degrees(rotation_angles(chordal_mean(sample).T @ centre))
    assert median_error < 0.5
    assert mean_error > 2 * median_error


def test_geodesic_median_respects_the_mask_and_batches():
    rng = np.random.default_rng(2)
    sets = random_rotations(rng, 12).reshape(3, 4, 3, 3)
    mask = np.array([[1, 1, 1, 0], [1, 0, 0, 0], [1, 1, 1, 1]], dtype=bool)
    garbage = sets.copy()
    garbage[~mask] = np.nan
    batched = geodesic_median(garbage, mask)
    for b in range(3):
        np.testing.assert_allclose(batched[b], geodesic_median(sets[b][mask[b]]), atol=1e-9)
    np.testing.assert_allclose(batched[1], sets[1, 0], atol=1e-9)


def make_rig_frames(rng, frames=60, cameras=4, noise_deg=1.0):
    """A rig (C, 3, 3) and per-frame rotations relative to each frame's first used camera."""
    rig = random_rotations(rng, cameras)
    used = rng.uniform(size=(frames, cameras)) > 0.2
    used[:, :2] |= used.sum(axis=1, keepdims=True) < 2
    frame_axes = random_rotations(rng, frames)  # Q_f: the frame's reference in the rig's axes
    per_frame = np.swapaxes(frame_axes, -1, -2)[:, None] @ rig[None]  # R_fc = Q_f^T R_c
    return rig, noisy(rng, per_frame, noise_deg), used


@pytest.mark.parametrize("anchor", [None, 2])
def test_average_recovers_the_rig_up_to_the_anchor(anchor):
    rng = np.random.default_rng(3)
    rig, per_frame, used = make_rig_frames(rng)
    garbage = np.where(used[..., None, None], per_frame, np.nan)
    found = average_rig_rotations(garbage, used, anchor=anchor)
    relative = rig[found.anchor].T @ rig  # the rig in the anchor's axes
    errors = np.degrees(rotation_angles(np.swapaxes(found.rotation, -1, -2) @ relative))
    assert errors.max() < 0.6
    np.testing.assert_allclose(found.rotation[found.anchor], np.eye(3), atol=1e-12)
    assert np.isnan(found.residual[~used]).all() and np.isfinite(found.residual[used]).all()


def test_swapped_views_do_not_tilt_the_rig_and_are_found():
    rng = np.random.default_rng(4)
    rig, per_frame, used = make_rig_frames(rng, frames=80, noise_deg=0.5)
    used[:] = True
    bad = np.zeros(used.shape, dtype=bool)
    bad[rng.choice(80, 8, replace=False), 1] = True  # 10% of camera 1's frames are wrong by 40-90 degrees
    axis = rng.normal(size=(int(bad.sum()), 3))
    axis /= np.linalg.norm(axis, axis=1, keepdims=True)
    per_frame[bad] = per_frame[bad] @ rodrigues_to_matrix(axis * np.radians(rng.uniform(40, 90, (len(axis), 1))))
    found = average_rig_rotations(per_frame, used, anchor=0)
    relative = rig[0].T @ rig
    errors = np.degrees(rotation_angles(np.swapaxes(found.rotation, -1, -2) @ relative))
    assert errors.max() < 0.5
    assert (np.degrees(found.residual[bad]) > 20).all()
    assert (np.degrees(found.residual[~bad]) < 5).all()


def test_a_camera_never_seen_with_the_others_is_an_error():
    rng = np.random.default_rng(5)
    _, per_frame, used = make_rig_frames(rng, frames=10, cameras=4)
    used[:] = False
    used[:5, :2] = True
    used[5:, 2:] = True
    with pytest.raises(ValueError, match="never solved in a frame with the other cameras"):
        average_rig_rotations(per_frame, used)
