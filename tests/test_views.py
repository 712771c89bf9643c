"""Views: validation, constructors, camera subsets and unit conversions."""

from __future__ import annotations

import numpy as np
import pytest

import metapose_geom as mg
from metapose_geom.views import KEYPOINT_SIGMA, UNINFORMATIVE_VARIANCE, box_to_pixels, pixels_to_box


def mixtures(rng, cameras=3, joints=17, components=4):
    out = np.empty((cameras, joints, components, 4))
    out[..., 0] = rng.uniform(0.1, 1.0, out.shape[:-1])
    out[..., 1:3] = rng.uniform(0, 1, out.shape[:-1] + (2,))
    out[..., 3] = rng.uniform(1e-4, 1e-2, out.shape[:-1])
    return out


class TestValidation:
    def test_smoke(self, rng):
        views = mg.Views(mixtures(rng), rng.normal(size=(3, 17, 3)), np.tile([10.0, 20, 300, 400], (3, 1)))
        assert (views.num_cameras, views.num_joints, views.num_components) == (3, 17, 4)
        assert views.camera_names == ("cam0", "cam1", "cam2")

    @pytest.mark.parametrize(
        "change, match",
        [
            (lambda m: m[:1], "at least two cameras"),
            (lambda m: m[:, :16], "skeleton"),
            (lambda m: m[..., :3], "mixtures: expected shape"),
            (lambda m: np.where(np.arange(4) == 3, np.nan, m), "NaN"),
            (lambda m: m * np.array([-1, 1, 1, 1]), "weights"),
            (lambda m: m * np.array([1, 1, 1, 0]), "variances"),
            (lambda m: m * np.array([0, 1, 1, 1]), "zero total weight at camera 0, joint 0"),
            (lambda m: m.astype(complex), "real numeric"),
        ],
    )
    def test_bad_mixtures(self, rng, change, match):
        with pytest.raises(ValueError, match=match):
            mg.Views(change(mixtures(rng)))

    def test_bad_mono3d_boxes_and_names(self, rng):
        good = mixtures(rng)
        with pytest.raises(ValueError, match="mono3d: expected shape"):
            mg.Views(good, np.zeros((2, 17, 3)))
        with pytest.raises(ValueError, match="mono3d: contains NaN"):
            mg.Views(good, np.full((3, 17, 3), np.inf))
        with pytest.raises(ValueError, match="boxes: expected shape"):
            mg.Views(good, boxes=np.ones((3, 3)))
        with pytest.raises(ValueError, match="boxes: width and height"):
            mg.Views(good, boxes=np.tile([0.0, 0, 0, 10], (3, 1)))
        with pytest.raises(ValueError, match="camera_names"):
            mg.Views(good, camera_names=("a", "a", "b"))


class TestUnits:
    def test_pixels_to_box_and_back(self, rng):
        boxes = np.column_stack([rng.uniform(0, 500, (3, 2)), rng.uniform(100, 400, (3, 2))])
        pixels = rng.uniform(0, 1000, (3, 17, 2))
        box = pixels_to_box(pixels, boxes)
        size = boxes[:, 2:].max(axis=1)
        np.testing.assert_allclose(box[1, 5], (pixels[1, 5] - boxes[1, :2]) / size[1], rtol=1e-14)
        np.testing.assert_allclose(box_to_pixels(box, boxes), pixels, rtol=1e-12)

    def test_from_mixtures_in_pixels(self, rng):
        boxes = np.tile([100.0, 50.0, 200.0, 400.0], (3, 1))
        pixel_mixtures = mixtures(rng)
        pixel_mixtures[..., 1:3] *= 1000
        pixel_mixtures[..., 3] *= 1000
        views = mg.Views.from_mixtures(pixel_mixtures, boxes=boxes, units="pixels")
        np.testing.assert_allclose(views.mixtures[..., 1], (pixel_mixtures[..., 1] - 100) / 400)
        np.testing.assert_allclose(views.mixtures[..., 3], pixel_mixtures[..., 3] / 400**2)
        with pytest.raises(ValueError, match="boxes: needed"):
            mg.Views.from_mixtures(pixel_mixtures, units="pixels")
        with pytest.raises(ValueError, match=r"units: expected one of \('box', 'pixels'\), got 'mm'"):
            mg.Views.from_mixtures(pixel_mixtures, units="mm")


class TestFromKeypoints:
    def test_spread_grows_as_confidence_falls(self, rng):
        keypoints = rng.uniform(0, 1, (2, 17, 2))
        confidence = np.tile(np.linspace(0.05, 1.0, 17), (2, 1))
        views = mg.Views.from_keypoints(keypoints, confidence)
        variance = views.mixtures[..., 0, 3]
        assert (np.diff(variance, axis=1) < 0).all()
        np.testing.assert_allclose(variance[:, -1], KEYPOINT_SIGMA**2)
        np.testing.assert_allclose(views.mixtures[..., 0, 1:3], keypoints)

    def test_missing_joints_become_uninformative(self, rng):
        keypoints = rng.uniform(0, 1, (2, 17, 2))
        keypoints[0, 3] = np.nan
        confidence = np.ones((2, 17))
        confidence[1, 7] = 0.0
        views = mg.Views.from_keypoints(keypoints, confidence)
        for c, j in ((0, 3), (1, 7)):
            np.testing.assert_array_equal(views.mixtures[c, j, 0], [1.0, 0.5, 0.5, UNINFORMATIVE_VARIANCE])

    def test_pixels_with_boxes(self, rng):
        boxes = np.tile([100.0, 200.0, 300.0, 150.0], (2, 1))
        keypoints = rng.uniform(100, 400, (2, 17, 2))
        views = mg.Views.from_keypoints(keypoints, np.ones((2, 17)), boxes=boxes)
        np.testing.assert_allclose(views.mixtures[..., 0, 1:3], (keypoints - [100, 200]) / 300)
        np.testing.assert_allclose(views.to_pixels(views.mixtures[..., 0, 1:3]), keypoints)

    def test_keypoint_views_can_be_solved(self):
        scene = mg.synth.make_scene(2)
        views = mg.Views.from_keypoints(scene.pose2d, np.full((4, 17), 0.9), boxes=scene.boxes, mono3d=scene.mono3d)
        solution = mg.solve(views, "ir")
        assert float(mg.metrics.pmpjpe(solution.pose3d, scene.pose3d)) < 80.0

    @pytest.mark.parametrize(
        "keypoints, confidence, match",
        [
            (np.zeros((2, 17, 3)), np.ones((2, 17)), "keypoints: expected shape"),
            (np.zeros((2, 17, 2)), np.ones((2, 16)), "confidences: expected shape"),
            (np.zeros((2, 17, 2)), np.full((2, 17), 1.5), "confidences"),
            (np.full((2, 17, 2), np.inf), np.ones((2, 17)), "keypoints: contains inf"),
            (np.array([["a"]]), np.ones((1, 1)), "keypoints: expected a real numeric"),
        ],
    )
    def test_bad_input(self, keypoints, confidence, match):
        with pytest.raises(ValueError, match=match):
            mg.Views.from_keypoints(keypoints, confidence)


class TestSubset:
    def test_by_index_and_name(self, rng):
        views = mg.Views(mixtures(rng, cameras=4), rng.normal(size=(4, 17, 3)), camera_names=("a", "b", "c", "d"))
        chosen = views.subset([2, "a", -1])
        assert chosen.camera_names == ("c", "a", "d")
        np.testing.assert_array_equal(chosen.mixtures, views.mixtures[[2, 0, 3]])
        np.testing.assert_array_equal(chosen.mono3d, views.mono3d[[2, 0, 3]])

    @pytest.mark.parametrize("cameras, match", [([0, 0], "repeated"), ([0, 9], "camera index"), (["x", 0], "named"),
                                                ([0], "at least two"), ([True, 0], "camera index"),
                                                ([1.0, 0], "camera index")])
    def test_bad_subsets(self, rng, cameras, match):
        views = mg.Views(mixtures(rng, cameras=3))
        with pytest.raises(ValueError, match=match):
            views.subset(cameras)


class TestReadOnlyCopies:
    def test_caller_changes_do_not_reach_the_views(self, rng):
        m, mono, boxes = mixtures(rng), rng.normal(size=(3, 17, 3)), np.tile([10.0, 20, 300, 400], (3, 1))
        views = mg.Views(m, mono, boxes)
        kept = [views.mixtures.copy(), views.mono3d.copy(), views.boxes.copy()]
        m[...] = 0.0  # a loop that refills one buffer must not change earlier frames
        mono[...] = 7.0
        boxes[..., 2:] = -1.0  # nor can an edit after validation bypass the checks
        for got, expected in zip([views.mixtures, views.mono3d, views.boxes], kept):
            np.testing.assert_array_equal(got, expected)

    def test_nobody_writes_into_a_validated_view(self, rng):
        views = mg.Views(mixtures(rng), rng.normal(size=(3, 17, 3)), np.tile([10.0, 20, 300, 400], (3, 1)))
        for array in (views.mixtures, views.mono3d, views.boxes):
            with pytest.raises(ValueError, match="read-only"):
                array[0] = 1.0
        for derived in (views.subset([2, 0]), mg.Views.from_keypoints(rng.uniform(0, 1, (2, 17, 2)), np.ones((2, 17)))):
            assert not derived.mixtures.flags.writeable
