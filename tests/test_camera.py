"""Cameras: weak perspective, full perspective with distortion, undistortion (metapose_geom.geometry)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from metapose_geom import geometry

import reference as ref
from conftest import (
    BATCH_SHAPES,
    assert_close,
    assert_derivative_close,
    camera_args,
    central_difference,
    random_camera,
    random_points_in_view,
    random_rotations,
)

JOINTS, CAMERAS, POINTS = 5, 3, 7


def weak_inputs(rng, batch=(), joints=JOINTS, cameras=CAMERAS):
    return (
        rng.normal(size=batch + (joints, 3)),
        random_rotations(rng, batch + (cameras,)),
        rng.uniform(0.3, 3.0, size=batch + (cameras,)),
        rng.normal(size=batch + (cameras, 3)),
    )


def camera_matrix(intrinsics: np.ndarray) -> np.ndarray:
    fx, fy, cx, cy = intrinsics
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])


def opencv_project(points, rotation, translation, intrinsics, distortion) -> np.ndarray:
    rvec, _ = cv2.Rodrigues(rotation)
    pixels, _ = cv2.projectPoints(points.reshape(-1, 1, 3), rvec, translation.reshape(3, 1),
                                  camera_matrix(intrinsics), distortion)
    return pixels.reshape(-1, 2)


UNDISTORT_CRITERIA = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 200, 1e-15)


def opencv_undistort(pixels, intrinsics, distortion) -> np.ndarray:
    source = pixels.reshape(-1, 1, 2)
    if hasattr(cv2, "undistortPointsIter"):  # OpenCV 4
        out = cv2.undistortPointsIter(source, camera_matrix(intrinsics), distortion, None, None, UNDISTORT_CRITERIA)
    else:  # OpenCV 5 folded it into undistortPoints
        out = cv2.undistortPoints(source, camera_matrix(intrinsics), distortion, None, None,
                                  criteria=UNDISTORT_CRITERIA)
    return out.reshape(-1, 2)


# =========================================================================== weak perspective


class TestProjectWeak:
    def test_smoke_identity_camera(self, rng):
        """R = I, s = 1, t = 0: the image point is the pose's x, y."""
        pose = rng.normal(size=(JOINTS, 3))
        points = geometry.project_weak(pose, np.eye(3)[None], [1.0], np.zeros((1, 3)))
        np.testing.assert_array_equal(points, pose[None, :, :2])

    def test_smoke_row_vector_convention(self):
        """X @ R with R the quarter turn about z taking x to y (R @ x): row vectors turn the other way."""
        rotation = np.array([[[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]])
        points = geometry.project_weak([[1.0, 0.0, 0.0]], rotation, [2.0], [[0.5, 0.25, 9.0]])
        np.testing.assert_allclose(points, [[[0.5, -2.0 + 0.25]]], atol=1e-15)

    @pytest.mark.parametrize("batch", BATCH_SHAPES)
    def test_shapes(self, rng, batch):
        points = geometry.project_weak(*weak_inputs(rng, batch))
        assert points.shape == batch + (CAMERAS, JOINTS, 2)
        assert points.dtype == np.float64

    @pytest.mark.parametrize("batch", BATCH_SHAPES)
    def test_values_against_reference(self, rng, batch):
        inputs = weak_inputs(rng, batch)
        assert_close(geometry.project_weak(*inputs), ref.project_weak(*inputs))

    def test_values_one_joint_one_camera(self, rng):
        inputs = weak_inputs(rng, (4,), joints=1, cameras=1)
        assert_close(geometry.project_weak(*inputs), ref.project_weak(*inputs))

    def test_general_matrices_and_any_finite_scale(self, rng):
        """The rotation is not checked and the scale may be zero or negative (documented)."""
        pose, _, _, shift = weak_inputs(rng, (2,))
        rotation = rng.normal(size=(2, CAMERAS, 3, 3))
        scale = np.array([[0.0, -1.5, 1e-9], [-0.0, 2.0, -3.0]])
        assert_close(geometry.project_weak(pose, rotation, scale, shift), ref.project_weak(pose, rotation, scale, shift))

    def test_linear_in_pose_without_shift(self, rng):
        pose, rotation, scale, _ = weak_inputs(rng)
        shift = np.zeros((CAMERAS, 3))
        other = rng.normal(size=pose.shape)
        combined = geometry.project_weak(2.0 * pose - 3.0 * other, rotation, scale, shift)
        separate = 2.0 * geometry.project_weak(pose, rotation, scale, shift) - 3.0 * geometry.project_weak(
            other, rotation, scale, shift
        )
        assert_close(combined, separate, rtol=1e-13)

    def test_depth_shift_does_not_move_the_image(self, rng):
        pose, rotation, scale, shift = weak_inputs(rng)
        moved = shift.copy()
        moved[:, 2] += 100.0
        np.testing.assert_array_equal(geometry.project_weak(pose, rotation, scale, moved),
                                      geometry.project_weak(pose, rotation, scale, shift))


class TestProjectWeakWithJacobian:
    @pytest.mark.parametrize("batch", BATCH_SHAPES)
    def test_shapes(self, rng, batch):
        result = geometry.project_weak_with_jacobian(*weak_inputs(rng, batch))
        assert isinstance(result, geometry.WeakProjection)
        stem = batch + (CAMERAS, JOINTS, 2)
        assert result.points.shape == stem
        assert result.d_pose.shape == stem + (3,)
        assert result.d_rotation.shape == stem + (3, 3)
        assert result.d_scale.shape == stem
        assert result.d_shift.shape == stem + (3,)
        assert all(array.dtype == np.float64 for array in result)

    def test_points_equal_project_weak(self, rng):
        inputs = weak_inputs(rng, (3,))
        assert_close(geometry.project_weak_with_jacobian(*inputs).points, geometry.project_weak(*inputs), rtol=1e-15)

    @pytest.mark.parametrize("batch", BATCH_SHAPES)
    def test_derivatives_against_reference(self, rng, batch):
        inputs = weak_inputs(rng, batch)
        got = geometry.project_weak_with_jacobian(*inputs)
        for name, value, expected in zip(got._fields, got, ref.project_weak_with_jacobian(*inputs)):
            assert_close(value, expected, err_msg=name)

    # ---------------------------------------------------------------- central differences
    @pytest.mark.parametrize("batch", BATCH_SHAPES)
    def test_d_pose(self, rng, batch):
        pose, rotation, scale, shift = weak_inputs(rng, batch)
        got = geometry.project_weak_with_jacobian(pose, rotation, scale, shift).d_pose
        numeric = central_difference(lambda p: geometry.project_weak(p, rotation, scale, shift), pose, trailing=2)
        # numeric[..., c, j, k, j', i]: only j' == j is non-zero
        assert_derivative_close(got, np.einsum("...cjkji->...cjki", numeric), what="d_pose")
        off_diagonal = numeric.copy()
        for j in range(JOINTS):
            off_diagonal[..., j, :, j, :] = 0.0
        np.testing.assert_array_equal(off_diagonal, 0.0)

    @pytest.mark.parametrize("batch", BATCH_SHAPES)
    def test_d_rotation(self, rng, batch):
        pose, rotation, scale, shift = weak_inputs(rng, batch)
        got = geometry.project_weak_with_jacobian(pose, rotation, scale, shift).d_rotation
        numeric = central_difference(lambda r: geometry.project_weak(pose, r, scale, shift), rotation, trailing=3)
        assert_derivative_close(got, np.einsum("...cjkcab->...cjkab", numeric), what="d_rotation")

    @pytest.mark.parametrize("batch", BATCH_SHAPES)
    def test_d_scale(self, rng, batch):
        pose, rotation, scale, shift = weak_inputs(rng, batch)
        got = geometry.project_weak_with_jacobian(pose, rotation, scale, shift).d_scale
        numeric = central_difference(lambda s: geometry.project_weak(pose, rotation, s, shift), scale, trailing=1)
        assert_derivative_close(got, np.einsum("...cjkc->...cjk", numeric), what="d_scale")

    @pytest.mark.parametrize("batch", BATCH_SHAPES)
    def test_d_shift(self, rng, batch):
        pose, rotation, scale, shift = weak_inputs(rng, batch)
        got = geometry.project_weak_with_jacobian(pose, rotation, scale, shift).d_shift
        numeric = central_difference(lambda t: geometry.project_weak(pose, rotation, scale, t), shift, trailing=2)
        assert_derivative_close(got, np.einsum("...cjkci->...cjki", numeric), what="d_shift")


# =========================================================================== full perspective


def perspective_inputs(rng, batch=(), count=POINTS):
    camera = random_camera(rng, batch)
    world, in_camera = random_points_in_view(rng, camera, count)
    return (world, *camera_args(camera)), in_camera


class TestProjectPerspective:
    def test_smoke_pinhole(self):
        """R = I, t = 0, no distortion: u = fx X / Z + cx, v = fy Y / Z + cy."""
        points = np.array([[0.5, -0.25, 2.0], [0.0, 0.0, 4.0]])
        pixels = geometry.project_perspective(points, np.eye(3), np.zeros(3), [1000.0, 1100.0, 960.0, 540.0],
                                              np.zeros(5))
        np.testing.assert_allclose(pixels, [[1210.0, 402.5], [960.0, 540.0]], rtol=0, atol=1e-12)

    @pytest.mark.parametrize("batch", BATCH_SHAPES)
    def test_shapes(self, rng, batch):
        inputs, _ = perspective_inputs(rng, batch)
        pixels = geometry.project_perspective(*inputs)
        assert pixels.shape == batch + (POINTS, 2)
        assert pixels.dtype == np.float64

    @pytest.mark.parametrize("batch", BATCH_SHAPES)
    def test_values_against_reference(self, rng, batch):
        inputs, _ = perspective_inputs(rng, batch)
        assert_close(geometry.project_perspective(*inputs), ref.project_perspective(*inputs))

    def test_pixels_inside_the_image(self, rng):
        """Sanity of the test cameras themselves: every sample lands in the 1920x1080 image."""
        inputs, _ = perspective_inputs(rng, (200,))
        pixels = geometry.project_perspective(*inputs)
        assert np.all((pixels >= 0) & (pixels <= [1920, 1080]))

    @pytest.mark.parametrize("batch", BATCH_SHAPES)
    def test_against_opencv(self, rng, batch):
        inputs, _ = perspective_inputs(rng, batch + (4,))
        pixels = geometry.project_perspective(*inputs)
        for index in np.ndindex(*batch, 4):
            expected = opencv_project(*(a[index] for a in inputs))
            np.testing.assert_allclose(pixels[index], expected, rtol=0, atol=1e-6)

    def test_each_distortion_coefficient_against_opencv(self, rng):
        """One coefficient at a time, so a swapped p1 / p2 or k2 / k3 cannot hide."""
        (points, rotation, translation, intrinsics, _), _ = perspective_inputs(rng, count=30)
        for index, value in enumerate([0.25, -0.08, 8e-4, -9e-4, 0.04]):
            distortion = np.zeros(5)
            distortion[index] = value
            got = geometry.project_perspective(points, rotation, translation, intrinsics, distortion)
            np.testing.assert_allclose(
                got, opencv_project(points, rotation, translation, intrinsics, distortion), rtol=0, atol=1e-6
            )


class TestProjectPerspectiveWithJacobian:
    @pytest.mark.parametrize("batch", BATCH_SHAPES)
    def test_shapes(self, rng, batch):
        inputs, _ = perspective_inputs(rng, batch)
        pixels, jacobian = geometry.project_perspective_with_jacobian(*inputs)
        assert pixels.shape == batch + (POINTS, 2)
        assert jacobian.shape == batch + (POINTS, 2, 3)
        assert pixels.dtype == jacobian.dtype == np.float64

    def test_pixels_equal_project_perspective(self, rng):
        inputs, _ = perspective_inputs(rng, (3,))
        pixels, _ = geometry.project_perspective_with_jacobian(*inputs)
        assert_close(pixels, geometry.project_perspective(*inputs), rtol=1e-15)

    @pytest.mark.parametrize("batch", BATCH_SHAPES)
    def test_d_points_against_central_differences(self, rng, batch):
        (points, *camera), _ = perspective_inputs(rng, batch)
        _, jacobian = geometry.project_perspective_with_jacobian(points, *camera)
        numeric = central_difference(lambda p: geometry.project_perspective(p, *camera), points, trailing=2)
        # numeric[..., n, k, m, i]: pixel n depends only on point n
        assert_derivative_close(jacobian, np.einsum("...nkni->...nki", numeric))

    @pytest.mark.parametrize("batch", BATCH_SHAPES)
    def test_d_points_against_reference(self, rng, batch):
        inputs, _ = perspective_inputs(rng, batch)
        _, jacobian = geometry.project_perspective_with_jacobian(*inputs)
        _, expected = ref.project_perspective_with_jacobian(*inputs)
        assert_close(jacobian, expected)


class TestUndistortPoints:
    def test_smoke_no_distortion(self):
        pixels = np.array([[1210.0, 402.5], [960.0, 540.0]])
        normalised = geometry.undistort_points(pixels, [1000.0, 1100.0, 960.0, 540.0], np.zeros(5))
        np.testing.assert_allclose(normalised, [[0.25, -0.125], [0.0, 0.0]], rtol=0, atol=1e-15)

    @pytest.mark.parametrize("batch", BATCH_SHAPES)
    def test_shapes(self, rng, batch):
        (points, *camera), _ = perspective_inputs(rng, batch)
        pixels = ref.project_perspective(points, *camera)
        normalised = geometry.undistort_points(pixels, camera[2], camera[3])
        assert normalised.shape == batch + (POINTS, 2)
        assert normalised.dtype == np.float64

    @pytest.mark.parametrize("batch", BATCH_SHAPES)
    def test_project_then_undistort(self, rng, batch):
        """Undistorting the projection returns (X / Z, Y / Z) of the camera-frame point."""
        (points, *camera), in_camera = perspective_inputs(rng, batch)
        pixels = geometry.project_perspective(points, *camera)
        normalised = geometry.undistort_points(pixels, camera[2], camera[3])
        assert_close(normalised, in_camera[..., :2] / in_camera[..., 2:], rtol=1e-12)

    @pytest.mark.parametrize("batch", BATCH_SHAPES)
    def test_values_against_reference(self, rng, batch):
        (points, *camera), _ = perspective_inputs(rng, batch)
        pixels = ref.project_perspective(points, *camera) + rng.normal(size=batch + (POINTS, 2))
        assert_close(geometry.undistort_points(pixels, camera[2], camera[3]),
                     ref.undistort_points(pixels, camera[2], camera[3]))

    @pytest.mark.parametrize("batch", BATCH_SHAPES)
    def test_against_opencv(self, rng, batch):
        (points, *camera), _ = perspective_inputs(rng, batch + (3,))
        intrinsics, distortion = camera[2], camera[3]
        pixels = ref.project_perspective(points, *camera)
        normalised = geometry.undistort_points(pixels, intrinsics, distortion)
        for index in np.ndindex(*batch, 3):
            expected = opencv_undistort(pixels[index], intrinsics[index], distortion[index])
            error_px = (normalised[index] - expected) * intrinsics[index][:2]
            np.testing.assert_allclose(error_px, 0.0, rtol=0, atol=1e-6)

    def test_undistort_then_project(self, rng):
        """The other way round: pixels (near, not on, projections of points in view) come back."""
        (points, *camera), _ = perspective_inputs(rng, (10,), count=50)
        intrinsics, distortion = camera[2], camera[3]
        pixels = ref.project_perspective(points, *camera) + rng.normal(scale=3.0, size=(10, 50, 2))
        normalised = geometry.undistort_points(pixels, intrinsics, distortion)
        lifted = np.concatenate([normalised, np.ones((10, 50, 1))], axis=-1)
        identity = np.broadcast_to(np.eye(3), (10, 3, 3))
        again = geometry.project_perspective(lifted, identity, np.zeros((10, 3)), intrinsics, distortion)
        np.testing.assert_allclose(again, pixels, rtol=0, atol=1e-9)
