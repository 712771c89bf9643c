"""Tests of metapose_geom.synth: determinism, geometry against independent references, realism
bounds, mixtures, monocular guesses, the ablation switches and bad input."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from metapose_geom import geometry, synth
from metapose_geom.skeletons import H36M_17
from metapose_geom.views import Views

PAIRS = [(1, 4), (2, 5), (3, 6), (11, 14), (12, 15), (13, 16)]
FIELDS = ("pose3d", "rotation", "translation", "intrinsics", "distortion", "image_size", "pose3d_cam",
          "pose2d", "boxes", "mixtures", "mono3d", "occluded", "confused")


@pytest.fixture(scope="module")
def scenes() -> list[synth.Scene]:
    """Scenes with 2 to 8 cameras and more occlusion and confusion than the defaults."""
    return [
        scene
        for cameras in range(2, 9)
        for scene in synth.make_scenes(6, cameras, seed=cameras, occlusion_rate=0.2, confusion_rate=0.2)
    ]


def assert_same_scene(a: synth.Scene, b: synth.Scene) -> None:
    for name in FIELDS:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


def pinhole_with_distortion(points, rotation, translation, intrinsics, distortion):
    """Naive numpy reference: world (J, 3) -> pixels (J, 2), OpenCV's Brown-Conrady model."""
    camera = points @ rotation.T + translation
    x, y = camera[:, 0] / camera[:, 2], camera[:, 1] / camera[:, 2]
    k1, k2, p1, p2, k3 = distortion
    r2 = x * x + y * y
    radial = 1 + k1 * r2 + k2 * r2**2 + k3 * r2**3
    xd = x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
    yd = y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
    fx, fy, cx, cy = intrinsics
    return np.stack([fx * xd + cx, fy * yd + cy], axis=-1)


def angle_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    cosine = (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)
    return np.degrees(np.arccos(np.clip(cosine, -1.0, 1.0)))


# --------------------------------------------------------------------------- determinism


class TestDeterminism:
    def test_same_seed_same_scene(self):
        assert_same_scene(synth.make_scene(7), synth.make_scene(7))

    def test_make_scenes_frames_regenerate_alone(self):
        batch = synth.make_scenes(3, num_cameras=5, seed=11, pixel_noise=2.0)
        for i, scene in enumerate(batch):
            assert_same_scene(scene, synth.make_scene(np.random.default_rng([11, i]), 5, pixel_noise=2.0))

    def test_different_seeds_differ(self):
        a, b = synth.make_scene(1), synth.make_scene(2)
        assert not np.allclose(a.pose3d, b.pose3d)
        assert not np.allclose(a.rotation, b.rotation)

    def test_generator_is_used_in_place(self):
        rng = np.random.default_rng(3)
        first, second = synth.make_scene(rng), synth.make_scene(rng)
        assert not np.allclose(first.pose3d, second.pose3d)


# --------------------------------------------------------------------------- geometry


class TestGeometry:
    def test_shapes_and_dtypes(self, scenes):
        for scene in scenes:
            c, j, k = scene.num_cameras, 17, 4
            shapes = {"pose3d": (j, 3), "rotation": (c, 3, 3), "translation": (c, 3), "intrinsics": (c, 4),
                      "distortion": (c, 5), "image_size": (c, 2), "pose3d_cam": (c, j, 3), "pose2d": (c, j, 2),
                      "boxes": (c, 4), "mixtures": (c, j, k, 4), "mono3d": (c, j, 3)}
            for name, shape in shapes.items():
                array = getattr(scene, name)
                assert array.shape == shape and array.dtype == np.float64, name
            assert scene.occluded.shape == scene.confused.shape == (c, j)
            assert scene.occluded.dtype == scene.confused.dtype == np.bool_

    def test_pose2d_is_the_kernel_projection(self, scenes):
        for scene in scenes[::5]:
            c = scene.num_cameras
            kernel = geometry.project_perspective(
                np.repeat(scene.pose3d[None], c, 0), scene.rotation, scene.translation, scene.intrinsics,
                scene.distortion,
            )
            np.testing.assert_allclose(scene.pose2d, kernel, rtol=0, atol=1e-9)

    def test_pose2d_matches_numpy_and_opencv(self, scenes):
        for scene in scenes[::3]:
            for c in range(scene.num_cameras):
                args = scene.rotation[c], scene.translation[c], scene.intrinsics[c], scene.distortion[c]
                np.testing.assert_allclose(scene.pose2d[c], pinhole_with_distortion(scene.pose3d, *args), atol=1e-8)
                fx, fy, cx, cy = scene.intrinsics[c]
                camera_matrix = np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1.0]])
                rvec, _ = cv2.Rodrigues(scene.rotation[c])
                pixels, _ = cv2.projectPoints(scene.pose3d, rvec, scene.translation[c], camera_matrix,
                                              scene.distortion[c])
                np.testing.assert_allclose(scene.pose2d[c], pixels[:, 0], atol=1e-6)

    def test_pose3d_cam_is_rotation_then_translation(self, scenes):
        for scene in scenes:
            for c in range(scene.num_cameras):
                expected = (scene.rotation[c] @ scene.pose3d.T).T + scene.translation[c]
                np.testing.assert_allclose(scene.pose3d_cam[c], expected, rtol=1e-12, atol=1e-9)

    def test_rotations_are_proper(self, scenes):
        rotation = np.concatenate([s.rotation for s in scenes])
        np.testing.assert_allclose(rotation @ np.swapaxes(rotation, 1, 2), np.broadcast_to(np.eye(3), rotation.shape),
                                   atol=1e-12)
        np.testing.assert_allclose(np.linalg.det(rotation), 1.0, atol=1e-12)

    def test_joints_in_front_and_inside_the_image(self, scenes):
        for scene in scenes:
            assert (scene.pose3d_cam[..., 2] > 500).all()
            assert (scene.pose2d >= 0).all() and (scene.pose2d <= scene.image_size[:, None, :]).all()

    def test_cameras_are_realistic(self, scenes):
        for scene in scenes:
            fx, fy, cx, cy = scene.intrinsics.T
            assert ((fx >= 1000) & (fx <= 1500)).all() and (np.abs(fy / fx - 1) <= 0.01 + 1e-12).all()
            assert (np.abs(cx / scene.image_size[:, 0] - 0.5) <= 0.02 + 1e-12).all()
            assert {tuple(size) for size in scene.image_size} <= {(1920.0, 1080.0), (1000.0, 1000.0)}
            k1, k2, p1, p2, k3 = scene.distortion.T
            assert ((k1 >= -0.3) & (k1 <= 0.1) & (k2 >= -0.05) & (k2 <= 0.1)).all()
            tangential = np.abs(np.stack([p1, p2]))
            assert ((tangential >= 1e-4) & (tangential <= 1e-3)).all() and (np.abs(k3) <= 0.02).all()
            # camera centres 3-6 m from the torso horizontally, 0.5-2.5 m high
            centres = -np.einsum("cba,cb->ca", scene.rotation, scene.translation)
            torso = scene.pose3d[[0, 7, 8]].mean(0)
            horizontal = np.hypot(*(centres - torso)[:, [0, 2]].T)
            assert ((horizontal >= 3000 - 1e-6) & (horizontal <= 6000 + 1e-6)).all()
            assert ((centres[:, 1] >= 500) & (centres[:, 1] <= 2500)).all()

    def test_sample_cameras_alone(self):
        rng = np.random.default_rng(4)
        pose = synth.sample_pose(rng)
        cameras = synth.sample_cameras(rng, pose, 8, distance=(4000.0, 4000.0), height=(1500.0, 1500.0))
        assert isinstance(cameras, synth.PerspectiveCameras)
        assert [a.shape for a in cameras] == [(8, 3, 3), (8, 3), (8, 4), (8, 5), (8, 2)]
        centres = -np.einsum("cba,cb->ca", cameras.rotation, cameras.translation)
        np.testing.assert_allclose(centres[:, 1], 1500.0)
        np.testing.assert_allclose(np.hypot(*(centres - pose[[0, 7, 8]].mean(0))[:, [0, 2]].T), 4000.0)

    def test_a_fixed_rig_sees_every_frame(self):
        rig = synth.sample_cameras(np.random.default_rng(3), synth.make_scene(3).pose3d, 3)
        frames = synth.make_scenes(4, seed=9, cameras=rig)
        for i, scene in enumerate(frames):
            for name in ("rotation", "translation", "intrinsics", "distortion", "image_size"):
                np.testing.assert_array_equal(getattr(scene, name), getattr(rig, name))
            pixels = geometry.project_perspective(np.repeat(scene.pose3d[None], 3, axis=0), *rig[:4])
            np.testing.assert_allclose(scene.pose2d, pixels, rtol=0, atol=1e-9)
            # the pose is drawn before the cameras: the same as the frame made without the rig
            np.testing.assert_array_equal(scene.pose3d, synth.make_scene(np.random.default_rng([9, i])).pose3d)
        assert not np.array_equal(frames[0].pose3d, frames[1].pose3d)

    def test_a_given_pose_is_seen_instead_of_a_drawn_one(self):
        rig = synth.sample_cameras(np.random.default_rng(3), synth.make_scene(3).pose3d, 3)
        pose = synth.make_scene(8).pose3d
        scene = synth.make_scene(5, cameras=rig, pose3d=pose)
        np.testing.assert_array_equal(scene.pose3d, pose)
        pixels = geometry.project_perspective(np.repeat(pose[None], 3, axis=0), *rig[:4])
        np.testing.assert_allclose(scene.pose2d, pixels, rtol=0, atol=1e-9)
        # nothing is drawn for a given pose: drawing it first and giving it makes the same scene
        rng = np.random.default_rng(5)
        assert_same_scene(synth.make_scene(rng, cameras=rig, pose3d=synth.sample_pose(rng)),
                          synth.make_scene(5, cameras=rig))
        alone = synth.make_scene(5, pose3d=pose)  # without a rig: cameras drawn around the given pose
        np.testing.assert_array_equal(alone.pose3d, pose)
        assert (alone.pose3d_cam[..., 2] > 500).all()

    def test_a_rig_with_the_subject_behind_a_camera_is_refused(self):
        rig = synth.sample_cameras(np.random.default_rng(3), synth.make_scene(3).pose3d, 3)
        centres = -np.einsum("cba,cb->ca", rig.rotation, rig.translation)
        away = rig.rotation * np.array([-1.0, 1.0, -1.0])[:, None]  # turned 180 degrees about y: facing away
        turned = rig._replace(rotation=away, translation=-np.einsum("cab,cb->ca", away, centres))
        with pytest.raises(ValueError, match="behind a camera"):
            synth.make_scene(0, cameras=turned)
        with pytest.raises(ValueError, match="cameras: expected a PerspectiveCameras"):
            synth.make_scene(0, cameras=rig.rotation)
        with pytest.raises(ValueError, match=r"cameras.translation: expected shape"):
            synth.make_scene(0, cameras=rig._replace(translation=rig.translation[:2]))

    def test_cameras_spread_around_the_subject(self, scenes):
        for scene in scenes:
            centres = -np.einsum("cba,cb->ca", scene.rotation, scene.translation)
            offset = centres - scene.pose3d[[0, 7, 8]].mean(0)
            azimuth = np.sort(np.arctan2(offset[:, 0], offset[:, 2]))
            gaps = np.diff(np.append(azimuth, azimuth[0] + 2 * np.pi))
            assert gaps.max() <= 1.5 * 2 * np.pi / scene.num_cameras + 1e-9  # evenly spaced +- a quarter gap

    def test_boxes_are_square_and_contain_the_joints(self, scenes):
        for scene in scenes:
            x, y, width, height = scene.boxes.T
            np.testing.assert_array_equal(width, height)
            assert (scene.pose2d[..., 0] >= x[:, None]).all() and (scene.pose2d[..., 0] <= (x + width)[:, None]).all()
            assert (scene.pose2d[..., 1] >= y[:, None]).all() and (scene.pose2d[..., 1] <= (y + height)[:, None]).all()
            extent = (scene.pose2d.max(1) - scene.pose2d.min(1)).max(1)
            assert ((width / extent >= 1.15 - 1e-9) & (width / extent <= 1.25 + 1e-9)).all()


# --------------------------------------------------------------------------- poses


@pytest.fixture(scope="module")
def poses() -> np.ndarray:
    rng = np.random.default_rng(2022)
    return np.stack([synth.sample_pose(rng) for _ in range(400)])


class TestPoses:

    def test_left_right_bone_lengths_are_equal(self, poses):
        lengths = H36M_17.bone_lengths(poses)
        bones = list(H36M_17.bones)
        for index, (parent, child) in enumerate(bones):
            mirrored = bones.index((synth.H36M_MIRROR[parent], synth.H36M_MIRROR[child]))
            np.testing.assert_allclose(lengths[:, index], lengths[:, mirrored], rtol=1e-12)

    def test_body_size_in_range(self, poses):
        rest = H36M_17.bone_lengths(H36M_17.rest_pose()).sum()
        height = 1700.0 * H36M_17.bone_lengths(poses).sum(1) / rest  # the height the bone lengths stand for
        assert height.min() >= 1500 * 0.92 and height.max() <= 1950 * 1.08
        assert height.max() - height.min() > 300  # sizes do vary

    def test_joint_angles_within_limits(self, poses):
        knee = np.concatenate([angle_deg(poses[:, k] - poses[:, h], poses[:, a] - poses[:, k])
                               for h, k, a in ((1, 2, 3), (4, 5, 6))])
        elbow = np.concatenate([angle_deg(poses[:, e] - poses[:, s], poses[:, w] - poses[:, e])
                                for s, e, w in ((11, 12, 13), (14, 15, 16))])
        assert knee.max() <= 150 + 1e-6 and elbow.max() <= 145 + 1e-6
        assert knee.max() > 100 and elbow.max() > 100  # the ranges are used
        # a bent knee under a near-vertical thigh puts the ankle behind the thigh (pelvis forward)
        forward = np.cross(poses[:, 4] - poses[:, 1], [0.0, 1.0, 0.0])
        for hip, knee_joint, ankle in ((1, 2, 3), (4, 5, 6)):
            thigh, shank = poses[:, knee_joint] - poses[:, hip], poses[:, ankle] - poses[:, knee_joint]
            across = shank - thigh * ((shank * thigh).sum(1) / (thigh * thigh).sum(1))[:, None]
            bent = (angle_deg(thigh, shank) > 20) & (angle_deg(thigh, np.array([0.0, -1.0, 0.0])) < 40)
            assert bent.sum() > 20
            assert ((across * forward).sum(1)[bent] < 0).all()

    def test_upright_feet_on_the_ground_any_heading(self, poses):
        ankles = poses[:, [3, 6], 1].min(1)
        assert (ankles > 50).all() and (ankles < 100).all()
        assert (poses[:, 10, 1] > poses[:, 0, 1]).all()  # head above pelvis
        hips = poses[:, 4] - poses[:, 1]
        heading = np.arctan2(hips[:, 2], hips[:, 0])
        counts, _ = np.histogram(heading, bins=4, range=(-np.pi, np.pi))
        assert counts.min() > 60


# --------------------------------------------------------------------------- mixtures and guesses


class TestEvidence:
    def test_mixtures_are_valid(self, scenes):
        for scene in scenes:
            weights, variances = scene.mixtures[..., 0], scene.mixtures[..., 3]
            assert (weights >= 0).all() and (variances > 0).all()
            np.testing.assert_allclose(weights.sum(-1), 1.0, atol=1e-12)

    def test_main_component_near_the_joint(self, scenes):
        distance = np.concatenate([
            (np.linalg.norm(s.mixtures[..., 0, 1:3] - s.pose2d_box_units(), axis=-1) * s.box_size()[:, None])
            [~s.occluded] for s in scenes
        ])  # pixels
        assert np.median(distance) < 3.0 * 1.5  # pixel_noise 3 px per axis: median ~ 1.18 * 3 px
        wide = np.concatenate([s.mixtures[s.occluded][..., 3].mean(-1) for s in scenes])
        narrow = np.concatenate([s.mixtures[~s.occluded][..., 3].mean(-1) for s in scenes])
        assert np.median(wide) > 3 * np.median(narrow)

    def test_confusion_puts_a_component_on_the_mirrored_joint(self, scenes):
        checked = 0
        for scene in scenes:
            truth = scene.pose2d_box_units()
            for c, j in zip(*np.nonzero(scene.confused)):
                mirrored = truth[c, synth.H36M_MIRROR[j]]
                pixels = np.linalg.norm(scene.mixtures[c, j, :, 1:3] - mirrored, axis=-1) * scene.box_size()[c]
                near = pixels < 5 * 3.0  # five times the pixel noise
                assert (scene.mixtures[c, j, near, 0] >= 0.25).any()
                checked += 1
            for a, b in PAIRS:  # the two joints of a pair are confused together
                np.testing.assert_array_equal(scene.confused[:, a], scene.confused[:, b])
        assert checked > 20

    def test_weak_labels_close_to_perspective(self, scenes):
        errors = np.concatenate([np.linalg.norm(s.weak_labels() - s.pose2d_box_units(), axis=-1).ravel()
                                 for s in scenes])
        assert np.mean(errors) < 0.03 and np.median(errors) < 0.02  # box units
        for scene in scenes:
            np.testing.assert_array_equal(scene.weak_labels(), scene.gt_mono3d()[..., :2])

    def test_gt_mono3d_is_the_weak_camera_of_the_pose(self, scenes):
        for scene in scenes:
            rotation, scale, shift = scene.weak_cameras()
            np.testing.assert_allclose(rotation, np.swapaxes(scene.rotation, 1, 2))
            projected = geometry.project_weak(scene.pose3d, rotation, scale, shift)
            np.testing.assert_allclose(projected, scene.weak_labels(), atol=1e-12)
            mono = scene.gt_mono3d()
            np.testing.assert_allclose(mono.mean(1)[:, 2], 0.0, atol=1e-12)
            np.testing.assert_allclose(mono.mean(1)[:, :2], scene.pose2d_box_units().mean(1), atol=1e-12)
            for c in range(scene.num_cameras):
                fit = geometry.procrustes(scene.pose3d, mono[c])
                aligned = fit.scale * scene.pose3d @ fit.rotation + fit.translation
                assert np.linalg.norm(aligned - mono[c]) <= 1e-9 * np.linalg.norm(mono[c] - mono[c].mean(0))
                np.testing.assert_allclose(fit.rotation, rotation[c], atol=1e-9)
                np.testing.assert_allclose(fit.scale, scale[c], rtol=1e-9)

    def test_mono3d_has_depth_errors_and_xy_on_the_2d(self, scenes):
        depth_error, spread, xy = [], [], []
        for scene in scenes:
            np.testing.assert_array_equal(scene.mono3d[..., :2], scene.mixtures[..., 0, 1:3])
            gt = scene.gt_mono3d()
            depth_error.append(np.abs(scene.mono3d[..., 2] - gt[..., 2]).ravel())
            spread.append(np.abs(gt[..., 2]).ravel())
            xy.append(np.linalg.norm(scene.mono3d[..., :2] - scene.pose2d_box_units(), axis=-1).ravel())
        depth_error, spread = np.concatenate(depth_error), np.concatenate(spread)
        assert np.median(np.concatenate(xy)) < 0.015  # box units: the noisy 2D, ~0.008 here
        assert np.median(depth_error) > 0.01  # a few cm at the weak scale, plus scale errors and flips
        assert np.median(depth_error) < np.median(spread)  # still correlated with the truth

    def test_views_are_valid(self, scenes):
        for scene in scenes[::4]:
            views = scene.views()
            assert isinstance(views, Views) and views.num_cameras == scene.num_cameras
            assert views.camera_names == tuple(f"cam{c}" for c in range(scene.num_cameras))
            np.testing.assert_array_equal(views.mixtures, scene.mixtures)
            np.testing.assert_array_equal(views.mono3d, scene.mono3d)

    @pytest.mark.parametrize("components", [1, 2, 6])
    def test_component_counts(self, components):
        scene = synth.make_scene(4, num_components=components, confusion_rate=1.0, occlusion_rate=0.5)
        assert scene.mixtures.shape[2] == components
        np.testing.assert_allclose(scene.mixtures[..., 0].sum(-1), 1.0, atol=1e-12)
        scene.views()

    def test_rates_zero_and_one(self):
        clean = synth.make_scene(5, occlusion_rate=0.0, confusion_rate=0.0)
        assert not clean.occluded.any() and not clean.confused.any()
        full = synth.make_scene(5, occlusion_rate=1.0, confusion_rate=1.0)
        assert full.occluded.all() and full.confused[:, [a for pair in PAIRS for a in pair]].all()


# --------------------------------------------------------------------------- ablations


class TestAblations:
    def test_gt_mixtures(self):
        points = np.random.default_rng(0).uniform(size=(3, 17, 2))
        mixtures = synth.gt_mixtures(points)
        assert mixtures.shape == (3, 17, 4, 4)
        np.testing.assert_array_equal(mixtures[..., 0], 0.25)
        np.testing.assert_array_equal(mixtures[..., 3], 3e-4)
        np.testing.assert_array_equal(mixtures[..., 1:3], np.broadcast_to(points[..., None, :], (3, 17, 4, 2)))
        noisy = synth.gt_mixtures(points, noise=0.01, rng=1)
        offsets = noisy[..., 1:3] - points[..., None, :]
        assert 0.008 < offsets.std() < 0.012
        np.testing.assert_array_equal(noisy, synth.gt_mixtures(points, noise=0.01, rng=1))

    def test_switches(self):
        scene = synth.make_scene(8)
        plain = scene.ablated_views()
        np.testing.assert_array_equal(plain.mixtures, scene.mixtures)
        np.testing.assert_array_equal(plain.mono3d, scene.mono3d)
        oracle = scene.ablated_views(gt_init=True, gt_mixtures=True)
        np.testing.assert_array_equal(oracle.mono3d, scene.gt_mono3d())
        np.testing.assert_array_equal(oracle.mixtures, synth.gt_mixtures(scene.pose2d_box_units()))
        weak = scene.ablated_views(gt_mixtures=True, weak_labels=True)
        np.testing.assert_array_equal(weak.mixtures, synth.gt_mixtures(scene.weak_labels()))
        noisy = scene.ablated_views(gt_mixtures=True, mixture_noise=0.01, rng=np.random.default_rng(0))
        assert not np.array_equal(noisy.mixtures, oracle.mixtures)

    def test_weak_labels_move_the_noisy_mixtures_with_their_joints(self):
        scene = synth.make_scene(9, confusion_rate=1.0)
        moved = scene.ablated_views(weak_labels=True).mixtures
        delta = scene.weak_labels() - scene.pose2d_box_units()
        np.testing.assert_allclose(moved[..., 0, 1:3] - scene.mixtures[..., 0, 1:3], delta, atol=1e-12)
        mirrored = delta[:, list(synth.H36M_MIRROR)]
        expected = np.where(scene.confused[..., None], mirrored, delta)
        np.testing.assert_allclose(moved[..., 1, 1:3] - scene.mixtures[..., 1, 1:3], expected, atol=1e-12)
        np.testing.assert_array_equal(moved[..., [0, 3]], scene.mixtures[..., [0, 3]])


# --------------------------------------------------------------------------- bad input


class TestBadInput:
    @pytest.mark.parametrize(
        ("kwargs", "name"),
        [
            ({"num_cameras": 1}, "num_cameras"),
            ({"num_cameras": 9}, "num_cameras"),
            ({"num_cameras": 3.0}, "num_cameras"),
            ({"num_cameras": True}, "num_cameras"),
            ({"num_components": 0}, "num_components"),
            ({"occlusion_rate": -0.1}, "occlusion_rate"),
            ({"occlusion_rate": 1.5}, "occlusion_rate"),
            ({"confusion_rate": float("nan")}, "confusion_rate"),
            ({"flip_rate": 2}, "flip_rate"),
            ({"pixel_noise": -1.0}, "pixel_noise"),
            ({"depth_noise": float("inf")}, "depth_noise"),
            ({"depth_scale_error": 1.0}, "depth_scale_error"),
            ({"seed_or_rng": -1}, "seed_or_rng"),
            ({"seed_or_rng": 1.5}, "seed_or_rng"),
            ({"seed_or_rng": "abc"}, "seed_or_rng"),
        ],
    )
    def test_make_scene(self, kwargs, name):
        with pytest.raises(ValueError, match=name):
            synth.make_scene(**kwargs)

    def test_make_scenes(self):
        with pytest.raises(ValueError, match="count"):
            synth.make_scenes(-1)
        with pytest.raises(ValueError, match="seed"):
            synth.make_scenes(2, seed=-3)
        with pytest.raises(ValueError, match="num_cameras"):
            synth.make_scenes(2, num_cameras=10)
        with pytest.raises(TypeError):
            synth.make_scenes(2, unknown_option=1)
        assert synth.make_scenes(0) == []

    def test_gt_mixtures(self):
        with pytest.raises(ValueError, match="points"):
            synth.gt_mixtures(np.zeros((3, 3)))
        with pytest.raises(ValueError, match="points"):
            synth.gt_mixtures([[np.nan, 0.0]])
        with pytest.raises(ValueError, match="noise"):
            synth.gt_mixtures(np.zeros((3, 2)), noise=-0.1)
        with pytest.raises(ValueError, match="rng"):
            synth.gt_mixtures(np.zeros((3, 2)), noise=0.1)
        with pytest.raises(ValueError, match="variance"):
            synth.gt_mixtures(np.zeros((3, 2)), variance=0.0)

    def test_ablated_views(self):
        scene = synth.make_scene(0)
        with pytest.raises(ValueError, match="mixture_noise"):
            scene.ablated_views(mixture_noise=0.01)
        with pytest.raises(ValueError, match="mixture_noise"):
            scene.ablated_views(gt_mixtures=True, mixture_noise=-1.0)
        with pytest.raises(ValueError, match="rng"):
            scene.ablated_views(gt_mixtures=True, mixture_noise=0.01)

    @pytest.mark.parametrize("pose3d", [np.zeros((16, 3)), np.full((17, 3), np.nan), "pose"])
    def test_make_scene_pose3d(self, pose3d):
        with pytest.raises(ValueError, match="pose3d"):
            synth.make_scene(0, pose3d=pose3d)

    def test_sample_functions(self):
        rng = np.random.default_rng(0)
        pose = synth.sample_pose(rng)
        with pytest.raises(ValueError, match="num_cameras"):
            synth.sample_cameras(rng, pose, 1)
        with pytest.raises(ValueError, match="pose3d"):
            synth.sample_cameras(rng, pose[:, :2], 3)
        with pytest.raises(ValueError, match="distance"):
            synth.sample_cameras(rng, pose, 3, distance=(0.0, 1000.0))
        with pytest.raises(ValueError, match="height"):
            synth.sample_cameras(rng, pose, 3, height=(2000.0, 1000.0))
        with pytest.raises(RuntimeError, match="sees the whole pose"):
            synth.sample_cameras(rng, pose, 3, distance=(600.0, 700.0), max_tries=5)
        with pytest.raises(ValueError, match="skeleton"):
            from metapose_geom.skeletons import Skeleton

            synth.sample_pose(rng, Skeleton("other", ("a", "b"), ((0, 1),), ((0.0, 0.0, 0.0), (0.0, 1.0, 0.0))))


def test_num_cameras_must_agree_with_a_rig():
    rig = synth.sample_cameras(np.random.default_rng(3), synth.make_scene(3).pose3d, 3)
    assert synth.make_scene(0, num_cameras=3, cameras=rig).num_cameras == 3
    with pytest.raises(ValueError, match="num_cameras: 4 given with a rig of 3 cameras"):
        synth.make_scene(0, num_cameras=4, cameras=rig)
    assert synth.make_scene(0).num_cameras == 4  # the default without a rig
