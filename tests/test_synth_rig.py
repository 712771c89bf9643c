"""Tests of metapose_geom.synth.make_rig_sequence: a subject walking through a fixed, distorted rig.

Determinism, the rig (fixed, aimed at the volume, sees every frame), noise-free keypoints against the
projection kernel, the distortion modes, the walk (smooth, within the radius, facing its direction,
depth varying per camera), the swap and dropout masks, the Capture it gives, and bad input."""

from __future__ import annotations

import numpy as np
import pytest

from metapose_geom import geometry, metrics, synth
from metapose_geom.io import Capture

CAMERAS, FRAMES = 4, 200
MIRROR = list(synth.H36M_MIRROR)
ARRAYS = ("poses", "path", "keypoints", "confidences", "mono3d", "pose2d", "occluded", "confused", "swapped",
          "dropped")
NOISE_FREE = {"pixel_noise": 0.0, "occlusion_rate": 0.0, "confusion_rate": 0.0}


@pytest.fixture(scope="module")
def sequence() -> synth.RigSequence:
    return synth.make_rig_sequence(0, CAMERAS, FRAMES)


@pytest.fixture(scope="module")
def masked() -> synth.RigSequence:
    """The same seed as ``sequence`` with swaps and dropouts: only the masks' effects differ."""
    return synth.make_rig_sequence(0, CAMERAS, FRAMES, swap_rate=0.3, dropout_rate=0.2)


@pytest.fixture(scope="module")
def clean() -> synth.RigSequence:
    return synth.make_rig_sequence(1, 6, 100, **NOISE_FREE)


def assert_same_sequence(a: synth.RigSequence, b: synth.RigSequence) -> None:
    for name in ARRAYS:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    for name, x, y in zip(a.cameras._fields, a.cameras, b.cameras):
        np.testing.assert_array_equal(x, y, err_msg=name)
    assert a.camera_names == b.camera_names and a.fps == b.fps


def project(sequence: synth.RigSequence, poses: np.ndarray | None = None) -> np.ndarray:
    """(C, F, 17, 2) px: the poses (F, 17, 3) seen by every camera of the rig, through the kernel."""
    poses = sequence.poses if poses is None else poses
    count = sequence.num_cameras
    return geometry.project_perspective(np.repeat(poses.reshape(1, -1, 3), count, axis=0), *sequence.cameras[:4]
                                        ).reshape(count, *poses.shape[:2], 2)


def camera_frame(sequence: synth.RigSequence) -> np.ndarray:
    """(C, F, 17, 3) mm: the poses in each camera's frame."""
    rig = sequence.cameras
    return np.einsum("cab,fjb->cfja", rig.rotation, sequence.poses) + rig.translation[:, None, None]


def camera_centres(rig: synth.PerspectiveCameras) -> np.ndarray:
    return -np.einsum("cba,cb->ca", rig.rotation, rig.translation)


# --------------------------------------------------------------------------- determinism


class TestDeterminism:
    def test_same_seed_same_sequence(self):
        assert_same_sequence(synth.make_rig_sequence(5, 3, 20), synth.make_rig_sequence(5, 3, 20))

    def test_different_seeds_differ(self):
        a, b = synth.make_rig_sequence(1, 3, 10), synth.make_rig_sequence(2, 3, 10)
        assert not np.allclose(a.poses, b.poses)
        assert not np.allclose(a.cameras.rotation, b.cameras.rotation)

    def test_generator_is_used_in_place(self):
        rng = np.random.default_rng(3)
        first, second = synth.make_rig_sequence(rng, 3, 10), synth.make_rig_sequence(rng, 3, 10)
        assert not np.allclose(first.poses, second.poses)
        assert_same_sequence(first, synth.make_rig_sequence(np.random.default_rng(3), 3, 10))

    def test_rates_change_nothing_else(self, sequence, masked):
        """The masks and the noise are drawn whatever the rates: the walk, the rig and the truth stay."""
        for name in ("poses", "path", "pose2d", "occluded", "confused"):
            np.testing.assert_array_equal(getattr(masked, name), getattr(sequence, name), err_msg=name)
        for x, y in zip(masked.cameras, sequence.cameras):
            np.testing.assert_array_equal(x, y)
        plain = ~masked.swapped & ~masked.dropped
        for name in ("keypoints", "confidences", "mono3d"):
            np.testing.assert_array_equal(getattr(masked, name)[plain], getattr(sequence, name)[plain], err_msg=name)
        quiet = synth.make_rig_sequence(0, CAMERAS, 30, **NOISE_FREE)
        np.testing.assert_array_equal(quiet.poses, sequence.poses[:30])  # the walk is drawn before the noise


# --------------------------------------------------------------------------- the rig


class TestRig:
    def test_shapes_dtypes_and_read_only(self, sequence):
        c, f = CAMERAS, FRAMES
        shapes = {"poses": (f, 17, 3), "path": (f, 3), "keypoints": (c, f, 17, 2), "confidences": (c, f, 17),
                  "mono3d": (c, f, 17, 3), "pose2d": (c, f, 17, 2)}
        for name, shape in shapes.items():
            array = getattr(sequence, name)
            assert array.shape == shape and array.dtype == np.float64, name
        for name in ("occluded", "confused"):
            assert getattr(sequence, name).shape == (c, f, 17) and getattr(sequence, name).dtype == np.bool_
        assert sequence.swapped.shape == sequence.dropped.shape == (c, f)
        assert [a.shape for a in sequence.cameras] == [(c, 3, 3), (c, 3), (c, 4), (c, 5), (c, 2)]
        assert sequence.camera_names == ("cam0", "cam1", "cam2", "cam3") and sequence.fps == 30.0
        assert (sequence.num_cameras, sequence.num_frames) == (c, f)
        for array in (*(getattr(sequence, name) for name in ARRAYS), *sequence.cameras):
            assert not array.flags.writeable
        geometry.PerspectiveCameras.checked(sequence.cameras)  # proper rotations, positive focal lengths

    def test_one_rig_sees_every_frame(self, sequence):
        """pose2d is every frame's pose through the one rig, 0.5 m or more in front of each camera and
        inside each image by the generator's 5 px margin."""
        np.testing.assert_allclose(sequence.pose2d, project(sequence), rtol=0, atol=1e-9)
        assert (camera_frame(sequence)[..., 2] >= 500.0).all()
        size = sequence.cameras.image_size[:, None, None]
        assert (sequence.pose2d >= 5.0 - 1e-9).all() and (sequence.pose2d <= size - 5.0 + 1e-9).all()

    def test_cameras_around_and_aimed_at_the_volume(self):
        for seed in range(3):
            sequence = synth.make_rig_sequence(seed, 5, 20, walk_radius=1200.0)
            rig, centre = sequence.cameras, np.array([0.0, synth.RIG_AIM_HEIGHT_MM, 0.0])
            centres = camera_centres(rig)
            horizontal = np.hypot(centres[:, 0], centres[:, 2])
            assert ((horizontal >= 4200.0 - 1e-6) & (horizontal <= 7200.0 + 1e-6)).all()  # radius + 3..6 m
            assert ((centres[:, 1] >= 500.0) & (centres[:, 1] <= 2500.0)).all()
            # the optical axis passes the centre within 2% of the distance per axis (3.5% in all)
            axis = rig.rotation[:, 2]
            offset = centre - centres
            miss = np.linalg.norm(offset - (offset * axis).sum(1, keepdims=True) * axis, axis=1)
            assert (miss <= 0.02 * np.sqrt(3) * horizontal).all()
            azimuth = np.sort(np.arctan2(centres[:, 0], centres[:, 2]))
            gaps = np.diff(np.append(azimuth, azimuth[0] + 2 * np.pi))
            assert gaps.max() <= 1.5 * 2 * np.pi / 5 + 1e-9  # evenly spaced, +- a quarter of the spacing

    def test_noise_free_keypoints_are_the_projections(self, clean):
        np.testing.assert_allclose(clean.keypoints, project(clean), rtol=0, atol=1e-9)
        assert not np.isnan(clean.keypoints).any()
        # visible joints: the main component's sigma is 2-4 crop px, so confidence 2 / sigma in [0.5, 1]
        assert (clean.confidences >= 0.5).all() and (clean.confidences <= 1.0).all()
        assert not clean.occluded.any() and not clean.confused.any()

    def test_keypoints_are_the_noisy_main_guess(self, sequence):
        error = np.linalg.norm(sequence.keypoints - sequence.pose2d, axis=-1)
        assert np.median(error[~sequence.occluded]) < 3.0 * 1.5  # pixel_noise 3 px per axis: median ~ 3.5 px
        assert np.median(error[sequence.occluded]) > 2 * np.median(error[~sequence.occluded])
        assert 0.07 < sequence.occluded.mean() < 0.13

    def test_confidence_rule(self, sequence):
        conf = sequence.confidences
        assert (conf > 0).all() and (conf <= 1).all()
        visible = ~sequence.occluded & ~sequence.confused
        assert (conf[visible] >= 0.5).all()
        assert (conf[sequence.occluded & ~sequence.confused] <= 0.5 + 1e-12).all()
        assert (conf[sequence.occluded] >= 1 / 6 * 0.5 - 1e-12).all()
        assert (conf[sequence.confused & ~sequence.occluded] <= 0.75 + 1e-12).all()

    def test_mono3d_is_the_scenes_guess(self):
        """Without its errors, each view's guess is the main guess (xy, box units) and the camera depth
        about its mean at the weak scale ``f / mean depth`` px per mm, in the same box units."""
        exact = {"depth_noise": 0.0, "flip_rate": 0.0, "depth_scale_error": 0.0}
        sequence = synth.make_rig_sequence(1, 3, 10, **NOISE_FREE, **exact)
        depth, focal = camera_frame(sequence)[..., 2], sequence.cameras.intrinsics[:, :2].mean(1)
        for c in range(sequence.num_cameras):
            for f in range(sequence.num_frames):
                guess, keypoints = sequence.mono3d[c, f], sequence.keypoints[c, f]
                # keypoints = box origin + box size * xy, one size for x and y
                size = np.ptp(keypoints[:, 0]) / np.ptp(guess[:, 0])
                origin = (keypoints - size * guess[:, :2]).mean(0)
                np.testing.assert_allclose(origin + size * guess[:, :2], keypoints, rtol=0, atol=1e-6)
                expected = (depth[c, f] - depth[c, f].mean()) * focal[c] / depth[c, f].mean()
                np.testing.assert_allclose(guess[:, 2] * size, expected, rtol=1e-9, atol=1e-6)
        noisy = synth.make_rig_sequence(1, 3, 10, **NOISE_FREE)
        np.testing.assert_array_equal(noisy.mono3d[..., :2], sequence.mono3d[..., :2])
        assert not np.allclose(noisy.mono3d[..., 2], sequence.mono3d[..., 2])


# --------------------------------------------------------------------------- distortion


class TestDistortion:
    @pytest.mark.parametrize("mode", ["full", "radial", "none"])
    def test_modes(self, mode):
        sequence = synth.make_rig_sequence(2, 3, 10, distortion=mode, **NOISE_FREE)
        k1, k2, p1, p2, k3 = sequence.cameras.distortion.T
        if mode == "none":
            assert not sequence.cameras.distortion.any()
        else:
            assert (k1 != 0).all() and (k2 != 0).all()
            assert ((np.abs(p1) >= 1e-4) & (np.abs(p2) >= 1e-4) & (k3 != 0)).all() if mode == "full" else \
                not (p1.any() or p2.any() or k3.any())
        np.testing.assert_allclose(sequence.keypoints, project(sequence), rtol=0, atol=1e-9)

    def test_no_distortion_is_the_pinhole(self):
        sequence = synth.make_rig_sequence(2, 3, 10, distortion="none", **NOISE_FREE)
        camera = camera_frame(sequence)
        fx, fy, cx, cy = (part[:, None, None] for part in sequence.cameras.intrinsics.T)
        pinhole = np.stack([fx * camera[..., 0] / camera[..., 2] + cx, fy * camera[..., 1] / camera[..., 2] + cy], -1)
        np.testing.assert_allclose(sequence.keypoints, pinhole, rtol=0, atol=1e-9)

    def test_the_walk_does_not_depend_on_the_mode(self):
        full, none = (synth.make_rig_sequence(4, 3, 10, distortion=mode) for mode in ("full", "none"))
        np.testing.assert_array_equal(full.poses, none.poses)


# --------------------------------------------------------------------------- the walk


class TestWalk:
    @pytest.mark.parametrize(("radius", "fps"), [(1500.0, 30.0), (800.0, 60.0), (2500.0, 25.0)])
    def test_smooth_steady_and_within_the_radius(self, radius, fps):
        sequence = synth.make_rig_sequence(7, 3, 150, walk_radius=radius, fps=fps)
        path = sequence.path
        np.testing.assert_array_equal(path[:, 1], 0.0)
        np.testing.assert_allclose(path[:, [0, 2]], sequence.poses[:, 0, [0, 2]], atol=1e-9)  # under the pelvis
        assert np.hypot(path[:, 0], path[:, 2]).max() <= radius + 1e-9
        step = np.diff(path, axis=0)
        length = np.linalg.norm(step, axis=1)  # chords of a smooth curve: the speed over one frame
        low, high = synth.WALK_SPEED_MM_S
        assert length.min() >= 0.99 * low / fps and length.max() <= high / fps + 1e-9
        assert length.max() / length.min() < 1.01  # one speed throughout
        # no corner: the radius of curvature (a step over its turn) stays above 0.3 walk radius
        # (the curve's shape is drawn at the scale of the radius; 3000 drawn loops: 0.42 or more)
        turn = np.arccos(np.clip((step[1:] * step[:-1]).sum(1) / length[1:] / length[:-1], -1, 1))
        assert (length[1:] / np.maximum(turn, 1e-12)).min() > 0.3 * radius

    def test_the_loop_fills_the_volume(self):
        """Long enough, the walk goes round its closed curve: the farthest point is 80-100% of the radius."""
        sequence = synth.make_rig_sequence(3, 2, 400, walk_radius=1000.0)
        distance = np.hypot(sequence.path[:, 0], sequence.path[:, 2])
        assert 800.0 - 1e-6 <= distance.max() <= 1000.0 + 1e-9
        assert np.ptp(np.unwrap(np.arctan2(sequence.path[:, 2], sequence.path[:, 0]))) >= 2 * np.pi - 0.1

    def test_facing_the_walking_direction_feet_on_the_ground(self, sequence):
        forward = np.cross(sequence.poses[:, 4] - sequence.poses[:, 1], [0.0, 1.0, 0.0])[:, [0, 2]]
        walking = np.gradient(sequence.path[:, [0, 2]], axis=0)
        cosine = (forward * walking).sum(1) / np.linalg.norm(forward, axis=1) / np.linalg.norm(walking, axis=1)
        assert np.degrees(np.arccos(np.clip(cosine, -1, 1))).max() < 15.0 + 0.5  # +-15 deg, tangent estimated
        ankles = sequence.poses[:, [3, 6], 1].min(1)
        assert (ankles > 50).all() and (ankles < 100).all()
        assert (sequence.poses[:, 10, 1] > sequence.poses[:, 0, 1]).all()

    def test_depth_from_each_camera_varies(self):
        """What makes focal length observable: the same body at depths d_min and d_max spans image sizes
        in the ratio d_max / d_min. The bound 1.2 changes the subject's size (~350 px tall) by 20%,
        twenty times the 3 px keypoint noise, and is what the geometry gives after one loop: the camera
        is at most radius + 6 m from the centre, and the walk passes at least 0.43 radius on either
        side of it, (7.5 + 0.65) / (7.5 - 0.65) = 1.19 for the default radius; 200 frames usually
        make a loop (measured over 30 seeds: 1.36 to 1.64 for the worst camera)."""
        for seed in range(4):
            sequence = synth.make_rig_sequence(seed, 6, FRAMES)
            depth = camera_frame(sequence)[..., 2].mean(-1)  # (C, F) mean joint depth
            assert (depth.max(1) / depth.min(1) > 1.2).all()


# --------------------------------------------------------------------------- swaps and dropouts


class TestMasks:
    def test_defaults_have_no_swap_nor_dropout(self, sequence):
        assert not sequence.swapped.any() and not sequence.dropped.any()
        assert not np.isnan(sequence.keypoints).any() and not np.isnan(sequence.mono3d).any()

    def test_rates(self, masked):
        assert not (masked.swapped & masked.dropped).any()
        assert abs(masked.dropped.mean() - 0.2) < 0.05  # 800 views: sd 0.014
        assert abs(masked.swapped.mean() / (1 - masked.dropped.mean()) - 0.3) < 0.06

    def test_swapped_views_are_the_mirrored_labelling(self, sequence, masked):
        swapped = masked.swapped
        assert swapped.sum() > 100
        for name in ("keypoints", "confidences", "mono3d"):
            np.testing.assert_array_equal(getattr(masked, name)[swapped], getattr(sequence, name)[swapped][:, MIRROR],
                                          err_msg=name)
        # the left hip's keypoint lies on the right hip's projection
        error = np.linalg.norm(masked.keypoints[swapped][:, 4] - masked.pose2d[swapped][:, 1], axis=-1)
        assert np.median(error) < 6.0

    def test_dropped_views_are_empty(self, masked):
        dropped = masked.dropped
        assert np.isnan(masked.keypoints[dropped]).all() and np.isnan(masked.mono3d[dropped]).all()
        assert (masked.confidences[dropped] == 0).all()
        assert not np.isnan(masked.keypoints[~dropped]).any() and (masked.confidences[~dropped] > 0).all()
        assert not np.isnan(masked.pose2d).any()  # the truth is kept everywhere


# --------------------------------------------------------------------------- the capture


class TestCapture:
    def test_fields(self, masked):
        capture = masked.capture()
        assert isinstance(capture, Capture) and capture.skeleton.name == "h36m17"
        assert capture.camera_names == masked.camera_names and capture.fps == 30.0
        np.testing.assert_array_equal(capture.image_size, masked.cameras.image_size)
        np.testing.assert_array_equal(capture.keypoints, masked.keypoints)
        np.testing.assert_array_equal(capture.confidences, masked.confidences)
        np.testing.assert_array_equal(capture.mono3d, masked.mono3d)
        np.testing.assert_array_equal(capture.detected, ~masked.dropped)
        assert masked.capture(mono3d=False).mono3d is None

    @pytest.mark.parametrize("mono3d", [True, False])
    def test_ir_solves_frames(self, mono3d):
        sequence = synth.make_rig_sequence(0, 4, 6, swap_rate=0.1)
        solution = sequence.capture(mono3d=mono3d).solve("ir", progress=False)
        assert solution.skipped == 0 and solution.solved.all()
        error = metrics.pmpjpe(solution.poses, sequence.poses)
        assert np.isfinite(solution.objectives).all() and np.median(error) < 60.0

    def test_frames_seen_by_one_camera_are_skipped(self):
        sequence = synth.make_rig_sequence(0, 2, 12, dropout_rate=0.3)
        solution = sequence.capture().solve("ir", progress=False)
        np.testing.assert_array_equal(solution.solved, ~sequence.dropped.any(axis=0))


# --------------------------------------------------------------------------- bad input


class TestBadInput:
    @pytest.mark.parametrize(
        ("kwargs", "name"),
        [
            ({"seed": -1}, "seed"),
            ({"seed": "abc"}, "seed"),
            ({"num_cameras": 1}, "num_cameras"),
            ({"num_cameras": 9}, "num_cameras"),
            ({"num_cameras": True}, "num_cameras"),
            ({"frames": 0}, "frames"),
            ({"frames": 2.0}, "frames"),
            ({"distortion": "fisheye"}, "distortion"),
            ({"distortion": None}, "distortion"),
            ({"walk_radius": 0.0}, "walk_radius"),
            ({"walk_radius": float("nan")}, "walk_radius"),
            ({"pixel_noise": -1.0}, "pixel_noise"),
            ({"occlusion_rate": 1.5}, "occlusion_rate"),
            ({"confusion_rate": -0.1}, "confusion_rate"),
            ({"swap_rate": 2.0}, "swap_rate"),
            ({"dropout_rate": float("nan")}, "dropout_rate"),
            ({"flip_rate": -1}, "flip_rate"),
            ({"num_components": 0}, "num_components"),
            ({"fps": 0.0}, "fps"),
            ({"depth_noise": float("inf")}, "depth_noise"),
            ({"depth_scale_error": 1.0}, "depth_scale_error"),
            ({"distance": (0.0, 1000.0)}, "distance"),
            ({"distance": 5000.0}, "distance"),
            ({"height": (2000.0, 1000.0)}, "height"),
            ({"max_tries": 0}, "max_tries"),
        ],
    )
    def test_make_rig_sequence(self, kwargs, name):
        with pytest.raises(ValueError, match=name):
            synth.make_rig_sequence(**{"frames": 5, **kwargs})

    def test_unknown_argument(self):
        with pytest.raises(TypeError):
            synth.make_rig_sequence(0, 3, 5, radius=1000.0)

    def test_a_rig_too_close_to_see_the_walk(self):
        with pytest.raises(RuntimeError, match="make_rig_sequence: no camera at azimuth .* every frame's pose"):
            synth.make_rig_sequence(0, 3, 20, distance=(600.0, 700.0), max_tries=5)

    def test_capture_flag(self, sequence):
        with pytest.raises(ValueError, match="mono3d"):
            sequence.capture(mono3d="yes")
