"""Rotations: the 6D representation and Rodrigues vectors (metapose_geom.geometry)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from metapose_geom import geometry

import reference as ref
from conftest import (
    BATCH_SHAPES,
    RTOL,
    assert_close,
    assert_derivative_close,
    assert_rotation,
    central_difference,
    random_rot6d,
    random_rotations,
    rotation_about,
)


class TestRot6dToMatrix:
    # ---------------------------------------------------------------- smoke
    def test_smoke_identity(self):
        rotation = geometry.rot6d_to_matrix([1.0, 0.0, 0.0, 0.0, 1.0, 0.0])
        np.testing.assert_array_equal(rotation, np.eye(3))

    def test_smoke_unnormalised_rows(self):
        """Rows (2, 0, 0) and (5, 3, 0): b1 = x, b2 = y after Gram-Schmidt, b3 = z."""
        rotation = geometry.rot6d_to_matrix([2.0, 0.0, 0.0, 5.0, 3.0, 0.0])
        np.testing.assert_allclose(rotation, np.eye(3), rtol=0, atol=1e-15)

    # ---------------------------------------------------------------- shapes
    @pytest.mark.parametrize("batch", BATCH_SHAPES)
    def test_shapes(self, rng, batch):
        rotation = geometry.rot6d_to_matrix(random_rot6d(rng, batch))
        assert rotation.shape == batch + (3, 3)
        assert rotation.dtype == np.float64

    def test_batch_items_are_independent(self, rng):
        rot6d = random_rot6d(rng, (4, 3))
        batched = geometry.rot6d_to_matrix(rot6d)
        for index in np.ndindex(4, 3):
            assert_close(batched[index], geometry.rot6d_to_matrix(rot6d[index]), rtol=1e-15)

    # ---------------------------------------------------------------- values
    @pytest.mark.parametrize("batch", BATCH_SHAPES)
    def test_values_against_reference(self, rng, batch):
        rot6d = random_rot6d(rng, batch)
        assert_close(geometry.rot6d_to_matrix(rot6d), ref.rot6d_to_matrix(rot6d))

    def test_values_for_unstructured_inputs(self, rng):
        """Plain Gaussian 6D vectors (any angle between the rows, any lengths)."""
        rot6d = rng.normal(size=(200, 6)) * rng.uniform(1e-3, 1e3, size=(200, 1))
        assert_close(geometry.rot6d_to_matrix(rot6d), ref.rot6d_to_matrix(rot6d))

    # ---------------------------------------------------------------- properties
    def test_output_is_a_proper_rotation(self, rng):
        rot6d = rng.normal(size=(500, 6))
        assert_rotation(geometry.rot6d_to_matrix(rot6d), atol=1e-14)

    @pytest.mark.parametrize("angle", [1e-2, 1e-4, 1e-8, 1e-11, 1e-13, 1e-16, 0.0])
    def test_nearly_parallel_rows_still_give_a_rotation(self, rng, angle):
        """Rows a few degrees or a hair apart give a rotation to rounding; rows closer than the
        documented cut (|u2| <= 1e-12 |a2|, rotation.hpp: below it the orthogonal part is lost
        in rounding) are refused. The angles stay a factor 10 clear of the cut."""
        a1 = rng.normal(size=(50, 3))
        across = np.cross(a1, rng.normal(size=(50, 3)))
        across /= np.linalg.norm(across, axis=-1, keepdims=True)
        a2 = 2.0 * (a1 / np.linalg.norm(a1, axis=-1, keepdims=True) + angle * across)
        rot6d = np.concatenate([a1, a2], axis=-1)
        if angle > 1e-12:  # |u2| / |a2| = angle / sqrt(1 + angle^2)
            assert_rotation(geometry.rot6d_to_matrix(rot6d), atol=1e-12)
        else:
            with pytest.raises(ValueError, match=r"^rot6d: the two rows are zero or parallel.* at index \(0,\)"):
                geometry.rot6d_to_matrix(rot6d)

    def test_first_row_is_the_normalised_first_input_row(self, rng):
        rot6d = random_rot6d(rng, (20,))
        rotation = geometry.rot6d_to_matrix(rot6d)
        assert_close(rotation[:, 0], rot6d[:, :3] / np.linalg.norm(rot6d[:, :3], axis=-1, keepdims=True))

    def test_second_row_in_the_plane_of_the_input_rows(self, rng):
        """b2 is in span(a1, a2) on a2's side of a1."""
        rot6d = random_rot6d(rng, (20,))
        rotation = geometry.rot6d_to_matrix(rot6d)
        normal = np.cross(rot6d[:, :3], rot6d[:, 3:])
        np.testing.assert_allclose(np.sum(rotation[:, 1] * normal, axis=-1), 0.0, atol=1e-12)
        assert np.all(np.sum(rotation[:, 1] * rot6d[:, 3:], axis=-1) > 0)

    def test_round_trip_from_matrix(self, rng):
        rotation = random_rotations(rng, (50,))
        assert_close(geometry.rot6d_to_matrix(geometry.matrix_to_rot6d(rotation)), rotation, rtol=1e-14)

    def test_invariant_to_gram_schmidt_redundancy(self, rng):
        """Scaling a1 by c > 0, adding any multiple of a1 to a2 and scaling a2 by c' > 0 do not change R."""
        rot6d = random_rot6d(rng, (20,))
        changed = rot6d.copy()
        changed[:, :3] *= rng.uniform(0.1, 10.0, size=(20, 1))
        changed[:, 3:] = rng.uniform(0.1, 10.0, size=(20, 1)) * (changed[:, 3:] + rng.normal(size=(20, 1)) * rot6d[:, :3])
        assert_close(geometry.rot6d_to_matrix(changed), geometry.rot6d_to_matrix(rot6d), rtol=1e-12)


    @pytest.mark.parametrize("magnitude", [1e-150, 1e-100, 1e100, 1e150])
    def test_rows_of_any_normal_norm_give_the_same_rotation(self, rng, magnitude):
        rot6d = random_rot6d(rng, (20,))
        assert_close(geometry.rot6d_to_matrix(rot6d * magnitude), geometry.rot6d_to_matrix(rot6d), rtol=1e-14)

    @pytest.mark.parametrize("row", [[3e-161, 0, 0, 0, 1, 0], [1, 0, 0, 0, 1e-160, 0], [1e160, 0, 0, 0, 1, 0]])
    def test_rows_whose_squared_norm_leaves_the_normal_range_are_rejected(self, row):
        """Squares below the smallest normal lose precision (R would not be orthonormal); above the
        largest they overflow."""
        with pytest.raises(ValueError, match=r"rot6d: .*norms outside 1e-154 \.\. 1e154"):
            geometry.rot6d_to_matrix(np.array(row, dtype=float))


class TestRot6dToMatrixWithJacobian:
    @pytest.mark.parametrize("batch", BATCH_SHAPES)
    def test_shapes(self, rng, batch):
        rotation, jacobian = geometry.rot6d_to_matrix_with_jacobian(random_rot6d(rng, batch))
        assert rotation.shape == batch + (3, 3)
        assert jacobian.shape == batch + (3, 3, 6)
        assert rotation.dtype == jacobian.dtype == np.float64

    def test_rotation_equals_rot6d_to_matrix(self, rng):
        rot6d = random_rot6d(rng, (30,))
        rotation, _ = geometry.rot6d_to_matrix_with_jacobian(rot6d)
        assert_close(rotation, geometry.rot6d_to_matrix(rot6d), rtol=1e-15)

    # ---------------------------------------------------------------- gradients
    @pytest.mark.parametrize("batch", BATCH_SHAPES)
    def test_jacobian_against_central_differences(self, rng, batch):
        rot6d = random_rot6d(rng, batch)
        _, jacobian = geometry.rot6d_to_matrix_with_jacobian(rot6d)
        numeric = central_difference(geometry.rot6d_to_matrix, rot6d, trailing=1)
        assert_derivative_close(jacobian, numeric)

    @pytest.mark.parametrize("batch", BATCH_SHAPES)
    def test_jacobian_against_reference(self, rng, batch):
        """The reference takes the derivative by the complex step: exact to rounding."""
        rot6d = random_rot6d(rng, batch)
        _, jacobian = geometry.rot6d_to_matrix_with_jacobian(rot6d)
        _, expected = ref.rot6d_to_matrix_with_jacobian(rot6d)
        assert_close(jacobian, expected)

    def test_jacobian_for_unstructured_inputs(self, rng):
        rot6d = rng.normal(size=(100, 6))
        _, jacobian = geometry.rot6d_to_matrix_with_jacobian(rot6d)
        _, expected = ref.rot6d_to_matrix_with_jacobian(rot6d)
        # the derivative grows as 1 / |a1| and 1 / |u2|: compare each item relative to its own size
        size = np.abs(expected).max(axis=(-3, -2, -1), keepdims=True)
        np.testing.assert_allclose(jacobian / size, expected / size, rtol=1e-9, atol=1e-9)

    # ---------------------------------------------------------------- properties
    def test_jacobian_annihilates_redundant_directions(self, rng):
        """R does not change when a1 is scaled, when a2 is scaled or when a multiple of a1 is added
        to a2: J maps the directions (a1, 0), (0, a2) and (0, a1) to zero."""
        rot6d = random_rot6d(rng, (20,))
        _, jacobian = geometry.rot6d_to_matrix_with_jacobian(rot6d)
        zero = np.zeros((20, 3))
        for direction in (
            np.concatenate([rot6d[:, :3], zero], axis=-1),  # scaling a1
            np.concatenate([zero, rot6d[:, :3]], axis=-1),  # adding a1 to a2
            np.concatenate([zero, rot6d[:, 3:]], axis=-1),  # scaling a2
        ):
            change = np.einsum("nabi,ni->nab", jacobian, direction)
            np.testing.assert_allclose(change, 0.0, atol=1e-12)

    def test_jacobian_of_first_row_ignores_second_input_row(self, rng):
        _, jacobian = geometry.rot6d_to_matrix_with_jacobian(random_rot6d(rng, (10,)))
        np.testing.assert_array_equal(jacobian[:, 0, :, 3:], 0.0)


class TestMatrixToRot6d:
    def test_smoke(self):
        np.testing.assert_array_equal(geometry.matrix_to_rot6d(np.eye(3)), [1.0, 0.0, 0.0, 0.0, 1.0, 0.0])

    @pytest.mark.parametrize("batch", BATCH_SHAPES)
    def test_shapes_and_values(self, rng, batch):
        rotation = random_rotations(rng, batch)
        rot6d = geometry.matrix_to_rot6d(rotation)
        assert rot6d.shape == batch + (6,)
        assert rot6d.dtype == np.float64
        np.testing.assert_array_equal(rot6d, ref.matrix_to_rot6d(rotation))

    def test_any_matrix_gives_its_first_two_rows(self, rng):
        matrix = rng.normal(size=(7, 3, 3))
        np.testing.assert_array_equal(geometry.matrix_to_rot6d(matrix), matrix[:, :2, :].reshape(7, 6))

    def test_non_contiguous_input(self, rng):
        rotation = random_rotations(rng, (6,))
        transposed = np.swapaxes(rotation, -1, -2)  # a view with other strides
        np.testing.assert_array_equal(geometry.matrix_to_rot6d(transposed), ref.matrix_to_rot6d(transposed))


SMALL_ANGLES = [0.0, 1e-300, 1e-16, 1e-12, 1e-8, 3e-5, 1e-4, 1.5e-4, 1e-3, 1e-2]
LARGE_ANGLES = [np.pi / 2, 2.0, 3.0, np.pi - 1e-3, np.pi - 1e-6, np.pi - 1e-9, np.pi - 1e-12, np.pi]


class TestRodriguesToMatrix:
    def test_smoke_zero_is_identity(self):
        np.testing.assert_array_equal(geometry.rodrigues_to_matrix([0.0, 0.0, 0.0]), np.eye(3))

    def test_smoke_quarter_turn_about_z(self):
        """R @ x rotates x: a quarter turn about z takes x to y."""
        rotation = geometry.rodrigues_to_matrix([0.0, 0.0, np.pi / 2])
        np.testing.assert_allclose(rotation, [[0, -1, 0], [1, 0, 0], [0, 0, 1]], atol=1e-15)

    @pytest.mark.parametrize("batch", BATCH_SHAPES)
    def test_shapes(self, rng, batch):
        rotation = geometry.rodrigues_to_matrix(rng.normal(size=batch + (3,)))
        assert rotation.shape == batch + (3, 3)
        assert rotation.dtype == np.float64

    @pytest.mark.parametrize("batch", BATCH_SHAPES)
    def test_values_against_reference(self, rng, batch):
        rotvec = rng.normal(size=batch + (3,)) * 1.5
        assert_close(geometry.rodrigues_to_matrix(rotvec), ref.rodrigues_to_matrix(rotvec))

    def test_values_beyond_one_turn(self, rng):
        rotvec = rng.normal(size=(50, 3))
        rotvec *= rng.uniform(3.0, 20.0, size=(50, 1)) / np.linalg.norm(rotvec, axis=-1, keepdims=True)
        assert_close(geometry.rodrigues_to_matrix(rotvec), ref.rodrigues_to_matrix(rotvec))

    @pytest.mark.parametrize("angle", SMALL_ANGLES)
    def test_values_at_small_angles(self, rng, angle):
        """Across the switch to the Taylor series: every entry, including the tiny off-diagonal
        ones, to relative 1e-10 of its own size."""
        axis = rng.normal(size=(8, 3))
        rotvec = axis / np.linalg.norm(axis, axis=-1, keepdims=True) * angle
        got, want = geometry.rodrigues_to_matrix(rotvec), ref.rodrigues_to_matrix(rotvec)
        np.testing.assert_allclose(got, want, rtol=RTOL, atol=1e-300)

    def test_against_opencv(self, rng):
        rotvec = np.concatenate(
            [rng.normal(size=(40, 3)), rng.normal(size=(10, 3)) * 1e-5, rng.normal(size=(10, 3)) * 5.0]
        )
        got = geometry.rodrigues_to_matrix(rotvec)
        for index, vector in enumerate(rotvec):
            expected, _ = cv2.Rodrigues(vector.reshape(3, 1))
            np.testing.assert_allclose(got[index], expected, rtol=0, atol=1e-12)

    def test_output_is_a_proper_rotation(self, rng):
        assert_rotation(geometry.rodrigues_to_matrix(rng.normal(size=(200, 3)) * 3.0), atol=1e-14)

    def test_axis_is_fixed_and_angle_is_the_norm(self, rng):
        rotvec = rng.normal(size=(50, 3))
        rotation = geometry.rodrigues_to_matrix(rotvec)
        assert_close(np.einsum("nab,nb->na", rotation, rotvec), rotvec, rtol=1e-13)
        angle = np.linalg.norm(rotvec, axis=-1)
        np.testing.assert_allclose(np.trace(rotation, axis1=-2, axis2=-1), 1.0 + 2.0 * np.cos(angle), atol=1e-14)

    def test_opposite_vector_gives_the_inverse(self, rng):
        rotvec = rng.normal(size=(30, 3))
        product = geometry.rodrigues_to_matrix(rotvec) @ geometry.rodrigues_to_matrix(-rotvec)
        np.testing.assert_allclose(product, np.broadcast_to(np.eye(3), product.shape), atol=1e-14)


class TestMatrixToRodrigues:
    def test_smoke_identity(self):
        np.testing.assert_array_equal(geometry.matrix_to_rodrigues(np.eye(3)), [0.0, 0.0, 0.0])

    @pytest.mark.parametrize("batch", BATCH_SHAPES)
    def test_shapes(self, rng, batch):
        rotvec = geometry.matrix_to_rodrigues(random_rotations(rng, batch))
        assert rotvec.shape == batch + (3,)
        assert rotvec.dtype == np.float64

    @pytest.mark.parametrize("batch", BATCH_SHAPES)
    def test_values_against_reference(self, rng, batch):
        """Angles up to 3 rad, where the vector is unique and well conditioned."""
        axis = rng.normal(size=batch + (3,))
        angle = rng.uniform(0.0, 3.0, size=batch + (1,))
        rotation = ref.rodrigues_to_matrix(axis / np.linalg.norm(axis, axis=-1, keepdims=True) * angle)
        assert_close(geometry.matrix_to_rodrigues(rotation), ref.matrix_to_rodrigues(rotation))

    def test_against_opencv(self, rng):
        rotation = random_rotations(rng, (50,))
        got = geometry.matrix_to_rodrigues(rotation)
        for index in range(50):
            expected, _ = cv2.Rodrigues(rotation[index])
            if np.linalg.norm(expected) < np.pi - 1e-3:
                np.testing.assert_allclose(got[index], expected[:, 0], rtol=0, atol=1e-10)

    @pytest.mark.parametrize("angle", SMALL_ANGLES + [0.5, 2.0, np.pi - 1e-3])
    def test_round_trip_vector(self, rng, angle):
        """Where the vector is unique: matrix_to_rodrigues(rodrigues_to_matrix(v)) == v."""
        axis = rng.normal(size=(8, 3))
        rotvec = axis / np.linalg.norm(axis, axis=-1, keepdims=True) * angle
        back = geometry.matrix_to_rodrigues(geometry.rodrigues_to_matrix(rotvec))
        np.testing.assert_allclose(back, rotvec, rtol=1e-9, atol=1e-9 * angle + 1e-300)

    @pytest.mark.parametrize("angle", SMALL_ANGLES + LARGE_ANGLES)
    def test_round_trip_matrix(self, rng, angle):
        """Near pi the sign of the vector is ambiguous: compare the matrices it gives."""
        axis = rng.normal(size=(8, 3))
        rotation = rotation_about(axis, np.full(8, angle))
        rotvec = geometry.matrix_to_rodrigues(rotation)
        assert np.all(np.linalg.norm(rotvec, axis=-1) <= np.pi + 1e-12)
        np.testing.assert_allclose(geometry.rodrigues_to_matrix(rotvec), rotation, rtol=0, atol=1e-12)

    @pytest.mark.parametrize("angle", LARGE_ANGLES)
    def test_angle_near_pi(self, rng, angle):
        axis = rng.normal(size=(8, 3))
        rotvec = geometry.matrix_to_rodrigues(rotation_about(axis, np.full(8, angle)))
        np.testing.assert_allclose(np.linalg.norm(rotvec, axis=-1), angle, rtol=0, atol=1e-9)
        unit = axis / np.linalg.norm(axis, axis=-1, keepdims=True)
        # parallel or anti-parallel to the axis
        np.testing.assert_allclose(np.abs(np.sum(rotvec * unit, axis=-1)), angle, rtol=0, atol=1e-9)

    @pytest.mark.parametrize("index", range(3))
    def test_half_turns_about_coordinate_axes(self, index):
        rotation = -np.eye(3)
        rotation[index, index] = 1.0
        rotvec = geometry.matrix_to_rodrigues(rotation)
        expected = np.zeros(3)
        expected[index] = np.pi
        np.testing.assert_allclose(np.abs(rotvec), expected, rtol=0, atol=1e-15)

    def test_angle_is_in_zero_to_pi(self, rng):
        """A rotation by 4 rad about k is returned as 2 pi - 4 about -k."""
        axis = rng.normal(size=(10, 3))
        unit = axis / np.linalg.norm(axis, axis=-1, keepdims=True)
        rotvec = geometry.matrix_to_rodrigues(ref.rodrigues_to_matrix(unit * 4.0))
        assert_close(rotvec, -unit * (2 * np.pi - 4.0), rtol=1e-12)
