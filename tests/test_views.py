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
        views = mg.Views.from_keypoints(keypoints, confidence, units="box")
        variance = views.mixtures[..., 0, 3]
        assert (np.diff(variance, axis=1) < 0).all()
        np.testing.assert_allclose(variance[:, -1], KEYPOINT_SIGMA**2)
        np.testing.assert_allclose(views.mixtures[..., 0, 1:3], keypoints)

    def test_missing_joints_become_uninformative(self, rng):
        keypoints = rng.uniform(0, 1, (2, 17, 2))
        keypoints[0, 3] = np.nan
        confidence = np.ones((2, 17))
        confidence[1, 7] = 0.0
        views = mg.Views.from_keypoints(keypoints, confidence, units="box")
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

    def test_a_loop_that_refills_one_buffer_gives_each_frame_its_own_data(self):
        """A reader that fills one preallocated buffer per frame: every Views keeps its frame."""
        scenes = mg.synth.make_scenes(5, num_cameras=3, seed=4)
        mixtures, mono3d, boxes = np.empty((3, 17, 4, 4)), np.empty((3, 17, 3)), np.empty((3, 4))
        frames = []
        for scene in scenes:
            fresh = scene.views()
            mixtures[...], mono3d[...], boxes[...] = fresh.mixtures, fresh.mono3d, fresh.boxes
            frames.append(mg.Views(mixtures, mono3d, boxes))
        for views, scene in zip(frames, scenes):
            np.testing.assert_array_equal(views.mono3d, scene.views().mono3d)
        batch = mg.solve_batch(frames, "s1", progress=False)
        for solution, scene in zip(batch, scenes):
            np.testing.assert_array_equal(solution.pose3d, mg.solve(scene.views(), "s1").pose3d)

    def test_a_box_edited_after_validation_changes_nothing(self, rng):
        boxes = np.tile([10.0, 20, 300, 400], (3, 1))
        views = mg.Views(mixtures(rng), boxes=boxes)
        boxes[1] = [np.nan, 0.0, -5.0, 0.0]  # would fail the checks
        np.testing.assert_array_equal(views.boxes[1], [10.0, 20, 300, 400])
        pixels = views.to_pixels(views.mixtures[..., 0, 1:3])
        assert np.isfinite(pixels).all()
        with pytest.raises(ValueError, match="read-only"):
            views.boxes[1, 2] = -5.0

    def test_nobody_writes_into_a_validated_view(self, rng):
        views = mg.Views(mixtures(rng), rng.normal(size=(3, 17, 3)), np.tile([10.0, 20, 300, 400], (3, 1)))
        for array in (views.mixtures, views.mono3d, views.boxes):
            with pytest.raises(ValueError, match="read-only"):
                array[0] = 1.0
        for derived in (views.subset([2, 0]), mg.Views.from_keypoints(rng.uniform(0, 1, (2, 17, 2)), np.ones((2, 17)), units="box")):
            assert not derived.mixtures.flags.writeable


# --------------------------------------------------------------------------- real detector output


def noisy_keypoints(scene, rng, pixels=2.0):
    """The scene's exact projections (px) with pixel noise, and confidences in [0.6, 1]."""
    keypoints = scene.pose2d + rng.normal(scale=pixels, size=scene.pose2d.shape)
    return keypoints, rng.uniform(0.6, 1.0, scene.pose2d.shape[:2])


def metres_and_millimetres(scene, rng):
    """The scene's box-unit guesses re-expressed per view as a lifter would give them: some size
    in mm (1500-2000 mm per box), hip-centred, and the same in metres."""
    size = rng.uniform(1500.0, 2000.0, (scene.mono3d.shape[0], 1, 1))
    mm = scene.mono3d * size
    mm -= mm[:, :1]  # pelvis at the origin
    return mm / 1000.0, mm


class TestRealInput:
    def test_pixels_without_boxes_infer_square_boxes_around_the_keypoints(self, rng):
        keypoints = rng.uniform(100, 400, (3, 17, 2)) * [1.0, 2.0]
        views = mg.Views.from_keypoints(keypoints, np.ones((3, 17)))
        extent = keypoints.max(axis=1) - keypoints.min(axis=1)
        np.testing.assert_allclose(views.boxes[:, 2], extent.max(axis=1) * (1 + 2 * mg.views.BOX_MARGIN))
        np.testing.assert_array_equal(views.boxes[:, 2], views.boxes[:, 3])
        np.testing.assert_allclose(views.boxes[:, :2] + views.boxes[:, 2:] / 2, (keypoints.max(1) + keypoints.min(1)) / 2)
        points = views.mixtures[..., 0, 1:3]
        assert (points > 0).all() and (points < 1).all()
        np.testing.assert_allclose(views.to_pixels(points), keypoints)

    def test_missing_keypoints_do_not_shape_the_inferred_box(self, rng):
        keypoints = rng.uniform(100, 400, (2, 17, 2))
        confidence = np.ones((2, 17))
        far = keypoints.copy()
        far[0, 3], confidence[1, 5] = 1e6, 0.0
        far[1, 5] = -1e6
        far[1, 7] = np.nan
        kept = np.ones((2, 17), bool)
        kept[0, 3] = kept[1, 5] = kept[1, 7] = False
        views = mg.Views.from_keypoints(far, np.where(kept | (np.arange(2)[:, None] == 1), confidence, 0.0))
        np.testing.assert_allclose(views.boxes, mg.views.infer_boxes(keypoints, kept))

    def test_pixels_with_and_without_boxes_give_the_same_solution(self, rng):
        scene = mg.synth.make_scene(3)
        keypoints, confidence = noisy_keypoints(scene, rng)
        inferred = mg.Views.from_keypoints(keypoints, confidence, mono3d=scene.mono3d)
        given = mg.Views.from_keypoints(keypoints, confidence, boxes=inferred.boxes, mono3d=scene.mono3d)
        other = mg.Views.from_keypoints(keypoints, confidence, boxes=scene.boxes, mono3d=scene.mono3d)
        for method in ("s1", "ir"):
            a, b, c = (mg.solve(views, method) for views in (inferred, given, other))
            np.testing.assert_array_equal(a.pose3d, b.pose3d)  # the inferred boxes are just boxes
            # other boxes change the box units (and the keypoints' spread in pixels a little)
            size = np.linalg.norm(a.pose3d - a.pose3d.mean(0)) / 17**0.5
            tolerance = 1e-9 if method == "s1" else 5e-3
            assert float(mg.metrics.pmpjpe(c.pose3d, a.pose3d)) < tolerance * size
            np.testing.assert_allclose(c.reprojection_pixels, a.reprojection_pixels, atol=1e-6 if method == "s1" else 1.5)

    def test_guesses_in_metres_millimetres_and_box_units_give_the_same_solution(self, rng):
        scene = mg.synth.make_scene(4)
        keypoints, confidence = noisy_keypoints(scene, rng)
        metres, millimetres = metres_and_millimetres(scene, rng)
        solutions = {}
        for name, guess in (("box", scene.mono3d), ("m", metres), ("mm", millimetres)):
            views = mg.Views.from_keypoints(keypoints, confidence, mono3d=guess)
            solutions[name] = mg.solve(views, "ir")
            assert views.mono3d_alignment.shape == (4, 3)
        for name in ("m", "mm"):
            np.testing.assert_allclose(solutions[name].pose3d, solutions["box"].pose3d, rtol=0, atol=1e-9)
            np.testing.assert_allclose(solutions[name].objective, solutions["box"].objective, rtol=1e-9)
        assert float(mg.metrics.pmpjpe(solutions["m"].pose3d, scene.pose3d)) < 60.0

    def test_the_alignment_is_the_weighted_least_squares_fit(self, rng):
        guesses = rng.normal(size=(2, 17, 3))
        scale, offset = np.array([0.3, 4.0]), rng.normal(size=(2, 2))
        points = scale[:, None, None] * guesses[..., :2] + offset[:, None]
        weights = rng.uniform(0.1, 1.0, (2, 17))
        points[0, 5] += 100.0  # an outlier with no weight does not move the fit
        weights[0, 5] = 0.0
        aligned, alignment = mg.views.align_mono3d(guesses, points, weights)
        np.testing.assert_allclose(alignment, np.column_stack([scale, offset]), rtol=1e-12)
        np.testing.assert_allclose(aligned, scale[:, None, None] * guesses + np.pad(offset, ((0, 0), (0, 1)))[:, None],
                                   rtol=1e-12)
        # against a direct solution of the normal equations
        w, g, p = weights[1], guesses[1, :, :2], points[1]
        design = np.zeros((34, 3))
        design[:, 0], design[0::2, 1], design[1::2, 2] = g.ravel(), 1.0, 1.0
        fit = np.linalg.lstsq(design * np.repeat(np.sqrt(w), 2)[:, None], p.ravel() * np.repeat(np.sqrt(w), 2),
                              rcond=None)[0]
        np.testing.assert_allclose(alignment[1], fit, rtol=1e-10)

    def test_a_swapped_view_is_relabelled(self, rng):
        scene = mg.synth.make_scene(5, num_cameras=4)
        keypoints, confidence = noisy_keypoints(scene, rng)
        metres, _ = metres_and_millimetres(scene, rng)
        index = mg.H36M_17.mirror_index()
        clean = mg.Views.from_keypoints(keypoints, confidence, mono3d=metres)
        assert not clean.swapped.any()
        keypoints[2], confidence[2], metres[2] = keypoints[2, index], confidence[2, index], metres[2, index]
        repaired = mg.Views.from_keypoints(keypoints, confidence, mono3d=metres)
        np.testing.assert_array_equal(repaired.swapped, [False, False, True, False])
        np.testing.assert_allclose(repaired.mixtures, clean.mixtures, rtol=1e-12)
        np.testing.assert_allclose(repaired.mono3d, clean.mono3d, rtol=1e-12)
        kept = mg.Views.from_keypoints(keypoints, confidence, mono3d=metres, repair_swaps=False)
        assert kept.swapped is None
        truth = scene.pose3d
        assert mg.metrics.pmpjpe(mg.solve(repaired).pose3d, truth) < mg.metrics.pmpjpe(mg.solve(kept).pose3d, truth)
        assert repaired.subset([2, 0]).swapped.tolist() == [True, False]
        # without guesses, the 2D alone says which view is swapped (views of one pose are rank 3)
        from_2d = mg.Views.from_keypoints(keypoints, confidence)
        np.testing.assert_array_equal(from_2d.swapped, [False, False, True, False])
        np.testing.assert_allclose(from_2d.mixtures, clean.mixtures, rtol=1e-12)
        assert mg.Views.from_keypoints(keypoints, confidence, repair_swaps=False).swapped is None

    @pytest.mark.parametrize("cameras", [3, 4, 6])
    def test_clean_frames_are_not_relabelled_and_swapped_ones_mostly_are(self, cameras):
        rng = np.random.default_rng(cameras)
        index = mg.H36M_17.mirror_index()
        false, found = 0, 0
        for scene in mg.synth.make_scenes(40, num_cameras=cameras, seed=11):
            keypoints = scene.pose2d + rng.normal(scale=3.0, size=scene.pose2d.shape)
            confidence = np.where(scene.occluded, 0.0, 0.9)  # occluded joints missing
            for guesses in (None, scene.mono3d):
                false += bool(mg.Views.from_keypoints(keypoints, confidence, mono3d=guesses).swapped.any())
                swapped_kp, swapped_conf = keypoints.copy(), confidence.copy()
                swapped_kp[1], swapped_conf[1] = keypoints[1, index], confidence[1, index]
                swapped_guesses = None if guesses is None else guesses.copy()
                if guesses is not None:
                    swapped_guesses[1] = guesses[1, index]
                views = mg.Views.from_keypoints(swapped_kp, swapped_conf, mono3d=swapped_guesses)
                found += views.swapped.tolist() == [c == 1 for c in range(cameras)]
        assert false == 0
        assert found >= 0.7 * 80

    def test_swaps_are_not_looked_for_with_two_views_or_when_half_disagree(self, rng):
        guesses = rng.normal(size=(4, 17, 3))
        index = mg.H36M_17.mirror_index()
        assert not mg.views.find_swapped_views(guesses[:2]).any()
        with pytest.raises(ValueError, match="^mono3d, points: give"):
            mg.views.find_swapped_views()
        half = guesses.copy()
        half[:2] = guesses[0]
        half[2:] = guesses[0, index]
        assert not mg.views.find_swapped_views(half).any()
        for seed in range(20):  # unrelated guesses or 2D fit no labelling: nothing to repair
            noise = np.random.default_rng(seed)
            assert not mg.views.find_swapped_views(noise.normal(size=(5, 17, 3))).any()
            assert not mg.views.find_swapped_views(points=noise.normal(size=(5, 17, 2))).any()
        one = np.repeat(guesses[:1], 4, axis=0)
        one[3] = one[3, index]
        np.testing.assert_array_equal(mg.views.find_swapped_views(one), [False, False, False, True])

    def test_mirror_image_guesses(self, rng):
        guesses = mg.synth.make_scene(6).gt_mono3d()
        assert not mg.views.mirror_image_guesses(guesses).any()
        assert mg.views.mirror_image_guesses(guesses * [1.0, 1.0, -1.0]).all()
        assert mg.views.mirror_image_guesses(guesses * [1.0, -1.0, 1.0]).all()

    def test_mirror_component(self, rng):
        keypoints = rng.uniform(100, 400, (2, 17, 2))
        confidence = rng.uniform(0.5, 1.0, (2, 17))
        confidence[0, 12] = 0.0  # l_elbow missing in camera 0: r_elbow gets no mirror component there
        views = mg.Views.from_keypoints(keypoints, confidence, mirror_weight=0.2)
        plain = mg.Views.from_keypoints(keypoints, confidence, mirror_weight=0.0)
        index = mg.H36M_17.mirror_index()
        assert views.num_components == 2
        np.testing.assert_array_equal(views.mixtures[:, :, 0], plain.mixtures[:, :, 0])
        np.testing.assert_array_equal(views.mixtures[:, :, 1, 1:], plain.mixtures[:, index, 0, 1:])
        weights = views.mixtures[:, :, 1, 0]
        expected = np.where(index != np.arange(17), 0.2, 0.0) * np.ones((2, 1))
        expected[0, [12, 15]] = 0.0
        np.testing.assert_array_equal(weights, expected)

    @pytest.mark.parametrize("call, match", [
        (lambda kp, c, g: mg.Views.from_keypoints(kp, c, units="box"), r"keypoints: they spread over .* pass units='pixels'"),
        (lambda kp, c, g: mg.Views.from_keypoints(kp / 1000, c), r"keypoints: .* pixels at most.* units='box'"),
        (lambda kp, c, g: mg.Views.from_keypoints(kp, c, units="box", boxes=np.ones((4, 4))), r"^boxes: keypoints in box"),
        (lambda kp, c, g: mg.Views.from_keypoints(kp, c, mono3d=g * 1000, mono3d_units="box"),
         r"^mono3d: camera 0's guess is .* not in box units; pass mono3d_units='auto'"),
        (lambda kp, c, g: mg.Views.from_keypoints(kp, c, mono3d=g * [1, -1, 1]), r"^mono3d: camera 0's guess fits .* mirrored"),
        (lambda kp, c, g: mg.Views.from_keypoints(kp, c, mono3d=np.full_like(g, 0.3)), r"^mono3d: camera 0's guess has all"),
        (lambda kp, c, g: mg.Views.from_keypoints(kp, c, mono3d=g[:, :3]), r"^mono3d: expected shape"),
        (lambda kp, c, g: mg.Views.from_keypoints(kp, c * (np.arange(4) != 1)[:, None]),
         r"^keypoints: camera 1 has 0 valid keypoint"),
        (lambda kp, c, g: mg.Views.from_keypoints(kp, c, mono3d=g, mono3d_units="metres"), r"^mono3d_units: expected"),
        (lambda kp, c, g: mg.Views.from_keypoints(kp, c, units="px"), r"^units: expected"),
        (lambda kp, c, g: mg.Views.from_keypoints(kp, c, mirror_weight=2.0), r"^mirror_weight"),
        (lambda kp, c, g: mg.Views.from_keypoints(kp, c, box_margin=-1), r"^box_margin"),
        (lambda kp, c, g: mg.Views.from_keypoints(kp, c, mono3d=g, repair_swaps="yes"), r"^repair_swaps"),
        (lambda kp, c, g: mg.Views.from_keypoints(kp[:, :16], c[:, :16]), r"^keypoints: J = 16 joints, but skeleton"),
        (lambda kp, c, g: mg.Views(mg.mixtures.keypoints_to_mixtures(kp, c)),
         r"^mixtures: camera \d's joints spread over .* cannot be box units"),
    ])
    def test_input_that_cannot_be_what_was_said_is_refused(self, rng, call, match):
        scene = mg.synth.make_scene(6)
        keypoints, confidence = noisy_keypoints(scene, rng)
        with pytest.raises(ValueError, match=match):
            call(keypoints, confidence, scene.mono3d)


# --------------------------------------------------------------------------- guesses without a scale


class TestFlatGuesses:
    """A view's guess with all its joints at one point has no scale: stage 1 would give camera
    scales of 1e15 or 1e-16 and a wrong pose. Exact equality is not the test: a constant that
    float64 cannot hold (0.3) leaves a rounding-level spread once centred."""

    @pytest.mark.parametrize("value", [0.3, 0.5, 1e3 + 0.1, -7.77])
    def test_a_constant_guess_is_refused_naming_the_view(self, value):
        views = mg.synth.make_scene(5, num_cameras=4).views()
        mono3d = views.mono3d.copy()
        mono3d[2] = value
        with pytest.raises(ValueError, match=r"mono3d: camera 2's guess has all its joints at one point"):
            mg.Views(views.mixtures, mono3d, views.boxes)

    def test_a_guess_spread_at_rounding_level_is_refused(self, rng):
        views = mg.synth.make_scene(5, num_cameras=4).views()
        mono3d = views.mono3d.copy()
        mono3d[0] = 0.3 + 1e-13 * rng.normal(size=(17, 3))
        with pytest.raises(ValueError, match=r"mono3d: camera 0's guess has all its joints at one point"):
            mg.Views(views.mixtures, mono3d, views.boxes)

    def test_every_path_to_the_solver_refuses_it_naming_the_frame(self):
        frames = [scene.views() for scene in mg.synth.make_scenes(4, num_cameras=4, seed=2)]
        mixtures = np.stack([views.mixtures for views in frames])
        mono3d = np.stack([views.mono3d for views in frames])
        mono3d[3, 1] = 0.3
        for method in ("s1", "ir"):
            with pytest.raises(ValueError, match=r"mono3d: frame 3, camera 1's guess has all its joints at one point"):
                mg.solve_arrays(mixtures, mono3d, method=method, progress=False)

    def test_small_and_far_but_real_guesses_are_kept(self, rng):
        views = mg.synth.make_scene(5, num_cameras=4).views()
        mono3d = views.mono3d.copy()
        mono3d[1] *= 1e-6  # a tiny pose is a pose
        mono3d[2] = mono3d[2] * 1e-5 + 40.0  # a small pose far from the origin too
        kept = mg.Views(views.mixtures, mono3d, views.boxes)
        scale = mg.solve(kept, "s1").cameras.scale
        np.testing.assert_allclose(scale[1:3] / mg.solve(views, "s1").cameras.scale[1:3], [1e-6, 1e-5], rtol=1e-6)


# --------------------------------------------------------------------------- boxes that overflow


class TestBoxRange:
    """Boxes are pixels: a box whose own arithmetic overflows float64 is refused before it gives
    inf pixels, and a conversion that overflows is an error, not inf."""

    @pytest.mark.parametrize("box", [[1e308, 1e308, 1e308, 1e308], [1.2e308, 0.0, 1e308, 10.0],
                                     [0.0, 1e300, 10.0, np.finfo(np.float64).max], [0.0, 0.0, 1e-310, 1e-310]],
                             ids=["near-max", "x-plus-width", "y-plus-height", "subnormal-size"])
    def test_views_refuse_boxes_that_overflow(self, rng, box):
        boxes = np.tile([10.0, 20, 300, 400], (3, 1))
        boxes[1] = box
        with pytest.raises(ValueError, match=r"boxes: camera 1's box .* is not pixels: .*overflow"):
            mg.Views(mixtures(rng), boxes=boxes)
        frames = np.stack([mixtures(rng)] * 2)
        with pytest.raises(ValueError, match=r"boxes: frame 0, camera 1's box .* is not pixels"):
            mg.solve_arrays(frames, boxes=np.stack([boxes] * 2), method="s1", progress=False)

    def test_large_but_finite_boxes_are_kept(self, rng):
        boxes = np.tile([-2e6, 3e6, 4e5, 4e5], (3, 1))
        boxes[2] = [1e200, 1e250, 1e-300, 1e-300]
        views = mg.Views(mixtures(rng), boxes=boxes)
        assert np.isfinite(views.to_pixels(views.mixtures[..., 0, 1:3])).all()

    def test_conversions_that_overflow_are_errors(self):
        boxes = np.tile([0.0, 0.0, 1e150, 1e150], (2, 1))
        with pytest.raises(ValueError, match=r"points, boxes: values too large or too small for float64"):
            box_to_pixels(np.full((2, 17, 2), 1e160), boxes)
        with pytest.raises(ValueError, match=r"pixels, boxes: values too large or too small for float64"):
            pixels_to_box(np.full((2, 17, 2), 1e300), np.tile([0.0, 0.0, 1e-150, 1e-150], (2, 1)))
        missing = np.full((2, 17, 2), 0.5)
        missing[1, 3] = np.nan  # a missing keypoint stays missing
        assert np.isnan(pixels_to_box(missing, boxes)[1, 3]).all() and np.isnan(box_to_pixels(missing, boxes)[1, 3]).all()

    def test_a_solution_whose_pixels_overflow_is_an_error_naming_frame_and_camera(self):
        views = mg.synth.make_scene(5, num_cameras=4).views()
        shifted = views.mixtures.copy()
        shifted[2, ..., 1] += 2.0  # camera 2 sees the person two to three boxes right of its box
        guesses = views.mono3d.copy()
        guesses[2, :, 0] += 2.0
        boxes = views.boxes.copy()
        boxes[2] = [1e308, 0.0, 4e307, 4e307]  # its far corner is finite, three box widths out is not
        far = mg.Views(shifted, guesses, boxes)
        with pytest.raises(ValueError, match=r"^frames\[0\]: reprojection_pixels: camera 2's pixels overflow float64"):
            mg.solve(far, "s1")
