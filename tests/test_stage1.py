"""Stage 1 (``_core.stage1``) against an independent numpy reference of design.md, section 1.

Camera 0 is the reference (R = I, s = 1, shift = m_0, the mean joint of its guess G_0). For each
other view k, with centred guesses A = G_0 - m_0 and B = G_k - m_k: R_k = U diag(1, 1, d) V^T from
the SVD U S V^T of A^T B (d = sign det(U V^T): the best *proper* rotation, Kabsch), s_k = |B| / |A|
(Frobenius), shift_k = m_k. The initial pose is the mean over k = 1..C-1 (view 0's own guess is not
in it) of B R_k^T / s_k + m_0, minus m_0.

The guesses are imperfect on purpose -- noisy, rotated, scaled and shifted per view, some
depth-mirrored (a monocular lifter's classic error, where an unconstrained U V^T would be a
reflection) -- and the core's solution is read through :mod:`metapose_geom.layout`. Mutant
references (the usual mistakes) are kept beside the right one and must disagree with the core, so
the comparison is known to bite.
"""

from __future__ import annotations

import numpy as np
import pytest

from metapose_geom import _core, layout, synth
from metapose_geom.geometry import rot6d_to_matrix

from conftest import assert_close, assert_rotation, random_rotations

#: agreement of the core with the reference: float64 rounding through an SVD against a quaternion
#: eigen-solver, relative to the largest value compared
TOLERANCE = 1e-12
#: a mutant must be off by more than this (relative): far beyond rounding, far below its real error
MUTANT_GAP = 1e-6

MUTANTS = ["view0_in_mean", "inverted_scale", "transposed_rotation", "mean_not_subtracted",
           "uncentred_guesses", "reflection_allowed"]


def stage1_reference(mono3d: np.ndarray, mutant: str | None = None) -> layout.CameraFrame:
    """mono3d (..., C, J, 3) -> pose (..., J, 3), rotation (..., C, 3, 3), scale (..., C), shift (..., C, 3).

    ``mutant`` names one deliberate mistake (see MUTANTS); None is design.md's stage 1."""
    guesses = np.asarray(mono3d, dtype=np.float64)
    cameras = guesses.shape[-3]
    means = guesses.mean(axis=-2, keepdims=True)  # (..., C, 1, 3)
    centred = guesses if mutant == "uncentred_guesses" else guesses - means
    A, m0 = centred[..., 0, :, :], means[..., 0, :, :]
    norm_A = np.linalg.norm(A, axis=(-2, -1))[..., None, None]
    rotations, scales, mapped = [np.broadcast_to(np.eye(3), A.shape[:-2] + (3, 3))], [np.ones(A.shape[:-2])], []
    if mutant == "view0_in_mean":
        mapped.append(A + m0)  # view 0 seen by itself: R = I, s = 1
    for k in range(1, cameras):
        B = centred[..., k, :, :]
        U, _, Vt = np.linalg.svd(np.swapaxes(A, -1, -2) @ B)
        d = np.sign(np.linalg.det(U @ Vt))
        if mutant == "reflection_allowed":
            d = np.ones_like(d)
        R = U @ (np.concatenate([np.ones(d.shape + (2,)), d[..., None]], axis=-1)[..., :, None] * Vt)
        if mutant == "transposed_rotation":
            R = np.swapaxes(R, -1, -2)
        norm_B = np.linalg.norm(B, axis=(-2, -1))[..., None, None]
        s = norm_A / norm_B if mutant == "inverted_scale" else norm_B / norm_A
        rotations.append(R)
        scales.append(s[..., 0, 0])
        mapped.append(B @ np.swapaxes(R, -1, -2) / s + m0)
    pose = np.mean(mapped, axis=0)
    if mutant != "mean_not_subtracted":
        pose = pose - m0
    return layout.CameraFrame(pose, np.stack(rotations, axis=-3), np.stack(scales, axis=-1), means[..., 0, :])


def core_stage1(mono3d: np.ndarray) -> layout.CameraFrame:
    """The core's stage 1, read through the layout module (camera 0 already has R = I, s = 1)."""
    mono3d = np.asarray(mono3d, dtype=np.float64)
    cameras, joints = mono3d.shape[-3:-1]
    x = _core.stage1(mono3d)
    assert x.shape == mono3d.shape[:-3] + (layout.solution_size(cameras, joints),)
    return layout.in_camera0(x, cameras, joints)


def _difference(got: layout.CameraFrame, want: layout.CameraFrame) -> float:
    """The largest disagreement of any part, relative to that part's largest value."""
    return max(float(np.abs(g - w).max() / max(np.abs(w).max(), 1e-300)) for g, w in zip(got, want))


def imperfect_guesses(rng: np.random.Generator, batch: tuple, cameras: int, joints: int = 17,
                      noise: float = 0.08, mirrored: float = 0.25) -> np.ndarray:
    """(batch..., C, J, 3): each view sees a body-like pose through its own rotation, scale in
    [0.3, 3], shift and noise (relative to the pose's spread); a share of views is depth-mirrored."""
    shape = tuple(batch)
    pose = rng.normal(size=shape + (1, joints, 3)) * np.array([0.3, 0.8, 0.2])  # wide, tall, shallow
    seen = pose + noise * rng.normal(size=shape + (cameras, joints, 3))
    rotation = random_rotations(rng, shape + (cameras,))
    scale = rng.uniform(0.3, 3.0, size=shape + (cameras, 1, 1))
    shift = rng.normal(size=shape + (cameras, 1, 3)) * 5.0
    guesses = scale * seen @ rotation + shift
    flip = rng.random(size=shape + (cameras, 1, 1)) < mirrored
    return np.where(flip, guesses * np.array([1.0, 1.0, -1.0]), guesses)


class TestAgainstReference:
    @pytest.mark.parametrize("cameras", range(2, 9))
    def test_noisy_rotated_scaled_shifted_guesses(self, rng, cameras):
        mono3d = imperfect_guesses(rng, (24,), cameras)
        got, want = core_stage1(mono3d), stage1_reference(mono3d)
        for name, g, w in zip(layout.CameraFrame._fields, got, want):
            assert_close(g, w, rtol=TOLERANCE, err_msg=f"{name}, {cameras} cameras")

    @pytest.mark.parametrize("batch", [(), (3,), (2, 3)])
    @pytest.mark.parametrize("joints", [3, 5, 17, 33])
    def test_batch_shapes_and_joint_counts(self, rng, batch, joints):
        mono3d = imperfect_guesses(rng, batch, 3, joints)
        got, want = core_stage1(mono3d), stage1_reference(mono3d)
        assert got.pose.shape == batch + (joints, 3)
        for name, g, w in zip(layout.CameraFrame._fields, got, want):
            assert_close(g, w, rtol=TOLERANCE, err_msg=name)

    @pytest.mark.parametrize("cameras", [2, 3, 4, 8])
    def test_synthetic_monocular_guesses(self, cameras):
        """The generator's guesses (box units, depth errors, flipped limbs) as a solver sees them."""
        scenes = synth.make_scenes(8, num_cameras=cameras, seed=11, flip_rate=0.3)
        mono3d = np.stack([scene.mono3d for scene in scenes])
        got, want = core_stage1(mono3d), stage1_reference(mono3d)
        for name, g, w in zip(layout.CameraFrame._fields, got, want):
            assert_close(g, w, rtol=TOLERANCE, err_msg=f"{name}, {cameras} cameras")

    def test_mirrored_views_get_a_proper_rotation(self, rng):
        """Where U V^T is a reflection, the core's rotation is still proper and equals Kabsch's."""
        mono3d = imperfect_guesses(rng, (16,), 4, mirrored=1.0)
        mono3d[:, 0] *= np.array([1.0, 1.0, -1.0])  # view 0 unmirrored: every other view is a reflection of it
        got, want = core_stage1(mono3d), stage1_reference(mono3d)
        assert_rotation(got.rotation)
        reflection = stage1_reference(mono3d, "reflection_allowed")
        assert np.all(np.linalg.det(reflection.rotation[:, 1:]) < 0)  # the case is really exercised
        assert_close(got.rotation, want.rotation, rtol=TOLERANCE)

    def test_camera_zero_is_the_reference_in_the_raw_vector(self, rng):
        """Before any re-expression: rot6d of camera 0 is I's first two rows, its scale is 1, its
        shift is its guess's mean, and the pose is centred (its mean joint is 0)."""
        mono3d = imperfect_guesses(rng, (6,), 5)
        pose, rot6d, scale_raw, shift = layout.unpack(_core.stage1(mono3d), 5, 17)
        np.testing.assert_array_equal(rot6d[:, 0], np.broadcast_to([1.0, 0, 0, 0, 1.0, 0], (6, 6)))
        np.testing.assert_allclose(layout.scale_from_raw(scale_raw[:, 0]), 1.0, rtol=1e-15)
        assert_close(shift, mono3d.mean(axis=-2), rtol=1e-15)
        np.testing.assert_allclose(pose.mean(axis=-2), 0.0, atol=1e-14 * np.abs(pose).max())
        assert_rotation(rot6d_to_matrix(rot6d))


class TestProperties:
    def test_exact_similar_copies_recover_the_cameras(self, rng):
        """Noise-free, unmirrored guesses: s_k and R_k are view k's relative to view 0, and the
        pose is view 0's centred guess."""
        mono3d = imperfect_guesses(rng, (5,), 4, noise=0.0, mirrored=0.0)
        got = core_stage1(mono3d)
        centred = mono3d - mono3d.mean(axis=-2, keepdims=True)
        assert_close(got.pose, centred[:, 0], rtol=1e-12)
        for k in range(1, 4):
            assert_close(centred[:, 0] @ got.rotation[:, k] * got.scale[:, k, None, None], centred[:, k], rtol=1e-12)

    def test_invariant_to_the_order_of_the_other_views(self, rng):
        mono3d = imperfect_guesses(rng, (6,), 5)
        order = [0, 3, 1, 4, 2]
        got, permuted = core_stage1(mono3d), core_stage1(mono3d[:, order])
        assert_close(permuted.pose, got.pose, rtol=1e-12)
        assert_close(permuted.rotation, got.rotation[:, order], rtol=1e-12)
        assert_close(permuted.scale, got.scale[:, order], rtol=1e-12)

    def test_a_view_with_all_joints_at_one_point_raises(self, rng):
        # a point whose mean over 17 joints is exact, so the centred guess is exactly zero
        mono3d = imperfect_guesses(rng, (3,), 3)
        mono3d[1, 2] = np.array([0.25, -1.5, 3.0])
        with pytest.raises(ValueError, match=r"^mono3d: .*all joints at one point.* at index \(1,\)"):
            _core.stage1(mono3d)


class TestTheComparisonBites:
    """Each usual mistake, written as a reference, disagrees with the core (and with the right
    reference) on the same imperfect guesses the agreement is checked on."""

    @pytest.mark.parametrize("mutant", MUTANTS)
    @pytest.mark.parametrize("cameras", [2, 3, 5, 8])
    def test_mutant_reference_disagrees_with_the_core(self, rng, mutant, cameras):
        mono3d = imperfect_guesses(rng, (24,), cameras, mirrored=0.5)
        mono3d[0, 1] = mono3d[0, 0] * np.array([1.0, 1.0, -1.0])  # one view surely a reflection of view 0
        got = core_stage1(mono3d)
        assert _difference(got, stage1_reference(mono3d)) < TOLERANCE * 10
        assert _difference(got, stage1_reference(mono3d, mutant)) > MUTANT_GAP, mutant

    def test_every_mutant_is_caught_by_the_agreement_check(self, rng):
        """The assertion TestAgainstReference uses fails for every mutant."""
        mono3d = imperfect_guesses(rng, (24,), 4, mirrored=0.5)
        mono3d[0, 1] = mono3d[0, 0] * np.array([1.0, 1.0, -1.0])
        got = core_stage1(mono3d)
        for mutant in MUTANTS:
            want = stage1_reference(mono3d, mutant)
            with pytest.raises(AssertionError):
                for name, g, w in zip(layout.CameraFrame._fields, got, want):
                    assert_close(g, w, rtol=TOLERANCE, err_msg=name)
