"""metapose_geom.nn, the torch side: equal to the compiled core, differentiable, and the refiner.

* geometry: ``nn.rot6d_to_matrix``, ``nn.project_weak`` and ``nn.mixture_log_likelihood`` equal
  the C++ kernels of :mod:`metapose_geom.geometry` to 1e-12 in float64 over leading batch dims;
* the objective: autograd gradients against finite differences (``torch.autograd.gradcheck``),
  pack/unpack round trips, the bone term against a plain numpy version;
* the Keras-form Adam loop against ``torch.optim.Adam`` (which it equals when epsilon = 0) and
  a hand-computed first step, the history convention, batch independence;
* the C++ refiner (``metapose_geom._core.refiner_objective`` / ``refine``): value and gradient
  equal autograd to 1e-9, the trajectory equals :func:`keras_adam_refine` to 1e-6.

Scenes are realistic: H36M-17 poses of about unit height, 4 weak cameras with scale ~1 seen in
box units, 4-component mixtures around the projections with variances 1e-4 .. 1e-2.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

import metapose_geom
from metapose_geom import geometry, layout, nn
from metapose_geom.skeletons import H36M_17

from conftest import SEED, BATCH_SHAPES, random_mixtures, random_rot6d, random_rotations

C, J, K = 4, 17, 4
P = layout.solution_size(C, J)
BONES = np.array(H36M_17.bones, dtype=np.int64)
#: float64 agreement of torch and the C++ kernels (same formulas, different summation order)
GEOMETRY_ATOL = 1e-12
OBJECTIVE_TOL = 1e-9
TRAJECTORY_TOL = 1e-6


def t64(array) -> torch.Tensor:
    return torch.as_tensor(np.asarray(array), dtype=torch.float64)


def inverse_softplus(scale: np.ndarray) -> np.ndarray:
    return scale + np.log(-np.expm1(-scale))


def realistic_scene(rng: np.random.Generator, frames: int) -> dict[str, np.ndarray]:
    """A batch of frames: mixtures (B, C, J, K, 4), the true solution and a perturbed start (B, P),
    reference bone lengths (B, nB)."""
    rest = H36M_17.rest_pose() / 1700.0  # about unit height
    pose = rest * rng.uniform(0.9, 1.1, size=(frames, 1, 1)) + rng.normal(0.0, 0.02, size=(frames, J, 3))
    pose -= pose.mean(axis=-2, keepdims=True)
    rotation = random_rotations(rng, (frames, C))
    scale = rng.uniform(0.6, 0.9, size=(frames, C))
    shift = np.concatenate(
        [rng.uniform(0.45, 0.55, size=(frames, C, 2)), rng.normal(0.0, 0.3, size=(frames, C, 1))], axis=-1
    )
    points = geometry.project_weak(pose, rotation, scale, shift)  # (B, C, J, 2)

    weights = rng.dirichlet(np.ones(K), size=(frames, C, J))
    means = points[..., None, :] + rng.normal(0.0, 0.015, size=(frames, C, J, K, 2))
    variances = np.exp(rng.uniform(np.log(1e-4), np.log(1e-2), size=(frames, C, J, K)))
    mixtures = np.concatenate([weights[..., None], means, variances[..., None]], axis=-1)

    rot6d = rotation[..., :2, :].reshape(frames, C, 6)
    truth = layout.pack(pose, rot6d, inverse_softplus(scale), shift)
    noise = layout.pack(
        rng.normal(0.0, 0.05, size=(frames, J, 3)),
        rng.normal(0.0, 0.1, size=(frames, C, 6)),
        rng.normal(0.0, 0.1, size=(frames, C)),
        rng.normal(0.0, 0.02, size=(frames, C, 3)),
    )
    bone_reference = H36M_17.bone_lengths(pose) * rng.uniform(0.95, 1.05, size=(frames, len(BONES)))
    return {"mixtures": mixtures, "truth": truth, "x0": truth + noise, "bone_reference": bone_reference}


@pytest.fixture
def scene() -> dict[str, np.ndarray]:
    return realistic_scene(np.random.default_rng(SEED), frames=6)


def torch_objective(scene, x, bone_weight):
    return nn.refiner_objective(
        t64(scene["mixtures"]), x, torch.as_tensor(BONES), t64(scene["bone_reference"]), bone_weight
    )


# --------------------------------------------------------------------------- import


def test_import_metapose_geom_does_not_import_torch():
    code = "import sys, metapose_geom; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


# --------------------------------------------------------------------------- geometry vs the C++ kernels


@pytest.mark.parametrize("batch", BATCH_SHAPES)
class TestGeometryEqualsCore:
    def test_rot6d_to_matrix(self, rng, batch):
        rot6d = random_rot6d(rng, batch)
        got = nn.rot6d_to_matrix(t64(rot6d))
        assert got.shape == batch + (3, 3) and got.dtype == torch.float64
        np.testing.assert_allclose(got.numpy(), geometry.rot6d_to_matrix(rot6d), rtol=0, atol=GEOMETRY_ATOL)

    def test_project_weak(self, rng, batch):
        pose = rng.normal(0.0, 0.5, size=batch + (J, 3))
        rotation = random_rotations(rng, batch + (C,))
        scale = rng.uniform(0.5, 1.5, size=batch + (C,))
        shift = rng.normal(0.5, 0.3, size=batch + (C, 3))
        got = nn.project_weak(t64(pose), t64(rotation), t64(scale), t64(shift))
        assert got.shape == batch + (C, J, 2)
        expected = geometry.project_weak(pose, rotation, scale, shift)
        np.testing.assert_allclose(got.numpy(), expected, rtol=0, atol=GEOMETRY_ATOL)

    def test_mixture_log_likelihood(self, rng, batch):
        mixtures = random_mixtures(rng, batch + (J,), components=K)
        mixtures[..., 3] = np.exp(rng.uniform(np.log(1e-4), np.log(1e-2), size=batch + (J, K)))
        mixtures[..., 0, 0] = 0.0  # a zero weight is allowed
        points = rng.uniform(0.0, 1.0, size=batch + (J, 2))
        got = nn.mixture_log_likelihood(t64(points), t64(mixtures))
        assert got.shape == batch + (J,)
        expected = geometry.mixture_log_likelihood(points, mixtures)
        # values reach ~1e3 far from every mean: compare relative to the magnitude
        np.testing.assert_allclose(got.numpy(), expected, rtol=GEOMETRY_ATOL, atol=GEOMETRY_ATOL)


def test_mixture_far_point_is_finite_with_finite_gradient():
    mixtures = t64([[[0.5, 0.0, 0.0, 1e-4], [0.5, 1.0, 1.0, 1e-4]]])
    points = t64([[1e3, -1e3]]).requires_grad_(True)
    value = nn.mixture_log_likelihood(points, mixtures)
    (gradient,) = torch.autograd.grad(value.sum(), points)
    assert torch.isfinite(value).all() and torch.isfinite(gradient).all()


def test_rot6d_to_matrix_is_a_rotation_and_inverts_first_two_rows(rng):
    rotation = random_rotations(rng, (8,))
    got = nn.rot6d_to_matrix(t64(rotation[:, :2, :].reshape(8, 6)))
    np.testing.assert_allclose(got.numpy(), rotation, rtol=0, atol=1e-14)


def test_float32_keeps_dtype(rng):
    rot6d = torch.as_tensor(random_rot6d(rng, (3, C)), dtype=torch.float32)
    rotation = nn.rot6d_to_matrix(rot6d)
    pose = torch.randn(3, J, 3, dtype=torch.float32)
    points = nn.project_weak(pose, rotation, torch.ones(3, C), torch.zeros(3, C, 3))
    mixtures = torch.as_tensor(random_mixtures(rng, (3, C, J), components=K), dtype=torch.float32)
    value = nn.mixture_log_likelihood(points, mixtures)
    assert rotation.dtype == points.dtype == value.dtype == torch.float32
    assert value.shape == (3, C, J)


def test_softplus_is_exact_everywhere():
    value = t64([-800.0, -30.0, -1.0, 0.0, 1e-3, 1.0, 19.0, 25.0, 40.0, 800.0])
    expected = np.logaddexp(value.numpy(), 0.0)
    np.testing.assert_allclose(nn.softplus(value).numpy(), expected, rtol=1e-15, atol=0)


# --------------------------------------------------------------------------- solution vector and objective


def test_pack_unpack_round_trip(scene):
    x = t64(scene["x0"]).reshape(2, 3, P)
    parts = nn.unpack_solution(x, C, J)
    assert [tuple(p.shape) for p in parts] == [(2, 3, J, 3), (2, 3, C, 6), (2, 3, C), (2, 3, C, 3)]
    assert torch.equal(nn.pack_solution(*parts), x)
    np.testing.assert_array_equal(parts[0].numpy(), layout.unpack(scene["x0"].reshape(2, 3, P), C, J).pose)


def test_unpack_rejects_wrong_length():
    with pytest.raises(ValueError, match=r"x: expected shape \(\.\.\., 91\)"):
        nn.unpack_solution(torch.zeros(2, P + 1, dtype=torch.float64), C, J)


def test_bone_term_requires_bones_and_reference(scene):
    with pytest.raises(ValueError, match="bones and bone_reference"):
        nn.refiner_objective(t64(scene["mixtures"]), t64(scene["x0"]), bone_weight=0.1)


@pytest.mark.parametrize("bone_weight", [0.0, 0.1])
def test_objective_equals_numpy_composition(scene, bone_weight):
    """The objective against the C++ geometry kernels composed in numpy."""
    x = scene["x0"]
    got = torch_objective(scene, t64(x), bone_weight).numpy()
    pose, rot6d, scale_raw, shift = layout.unpack(x, C, J)
    points = geometry.project_weak(pose, geometry.rot6d_to_matrix(rot6d), np.logaddexp(scale_raw, 0.0), shift)
    expected = -geometry.mixture_log_likelihood(points, scene["mixtures"]).mean(axis=(-2, -1))
    lengths = H36M_17.bone_lengths(pose)
    reference = scene["bone_reference"]
    relative = lengths / lengths.mean(-1, keepdims=True) - reference / reference.mean(-1, keepdims=True)
    expected = expected + bone_weight * np.linalg.norm(relative, axis=-1)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("bone_weight", [0.0, 0.1])
def test_objective_gradcheck(scene, bone_weight):
    x = t64(scene["x0"][:2]).requires_grad_(True)
    mixtures, reference = t64(scene["mixtures"][:2]), t64(scene["bone_reference"][:2])
    bones = torch.as_tensor(BONES)
    assert torch.autograd.gradcheck(lambda x: nn.refiner_objective(mixtures, x, bones, reference, bone_weight), (x,))


def test_geometry_gradcheck(rng):
    rot6d = t64(random_rot6d(rng, (2, C))).requires_grad_(True)
    pose = t64(rng.normal(size=(2, 5, 3))).requires_grad_(True)
    scale = t64(rng.uniform(0.5, 1.5, size=(2, C))).requires_grad_(True)
    shift = t64(rng.normal(size=(2, C, 3))).requires_grad_(True)
    mixtures = random_mixtures(rng, (2, 5), components=K)
    mixtures = t64(mixtures).requires_grad_(True)
    points = t64(rng.normal(0.5, 0.2, size=(2, 5, 2))).requires_grad_(True)
    assert torch.autograd.gradcheck(nn.rot6d_to_matrix, (rot6d,))
    assert torch.autograd.gradcheck(lambda *a: nn.project_weak(a[0], nn.rot6d_to_matrix(a[1]), *a[2:]),
                                    (pose, rot6d, scale, shift))
    assert torch.autograd.gradcheck(nn.mixture_log_likelihood, (points, mixtures))


def test_objective_is_invariant_to_camera_order(scene):
    permutation = [2, 0, 3, 1]
    x = t64(scene["x0"])
    pose, rot6d, scale_raw, shift = nn.unpack_solution(x, C, J)
    x_permuted = nn.pack_solution(pose, rot6d[:, permutation], scale_raw[:, permutation], shift[:, permutation])
    mixtures = t64(scene["mixtures"])
    np.testing.assert_allclose(
        nn.refiner_objective(mixtures[:, permutation], x_permuted).numpy(),
        nn.refiner_objective(mixtures, x).numpy(),
        rtol=1e-13,
    )


# --------------------------------------------------------------------------- Keras-form Adam


def test_history_convention(scene):
    mixtures, x0 = t64(scene["mixtures"][:2]), t64(scene["x0"][:2])
    for steps, every, size in [(10, 3, 4), (10, 5, 3), (10, 1, 11), (10, 0, 0), (0, 1, 1), (7, 20, 1)]:
        result = nn.keras_adam_refine(mixtures, x0, steps=steps, history_every=every)
        assert result["x"].shape == (2, P) and result["objective"].shape == (2,)
        assert result["history_x"].shape == (2, size, P) and result["history_objective"].shape == (2, size)
        if size:
            assert torch.equal(result["history_x"][:, 0], x0)
        if every and steps % every == 0:
            assert torch.equal(result["history_x"][:, -1], result["x"])
            assert torch.equal(result["history_objective"][:, -1], result["objective"])
        np.testing.assert_allclose(
            result["history_objective"].numpy(),
            nn.refiner_objective(mixtures[:, None], result["history_x"]).numpy(),
            rtol=1e-14,
        )
    assert not x0.requires_grad


def test_refine_rejects_bad_counts(scene):
    mixtures, x0 = t64(scene["mixtures"]), t64(scene["x0"])
    with pytest.raises(ValueError, match="steps"):
        nn.keras_adam_refine(mixtures, x0, steps=-1)
    with pytest.raises(ValueError, match="history_every"):
        nn.keras_adam_refine(mixtures, x0, history_every=-2)


def test_first_step_is_keras_adam(scene):
    """One step by hand: x1 = x0 - lr sqrt(1-b2)/(1-b1) * (1-b1) g / (sqrt((1-b2) g^2) + eps)."""
    mixtures, x0 = t64(scene["mixtures"]), t64(scene["x0"]).requires_grad_(True)
    (gradient,) = torch.autograd.grad(nn.refiner_objective(mixtures, x0).sum(), x0)
    lr, b1, b2, eps = 0.05, 0.8, 0.99, 0.3  # a large epsilon, so its placement matters
    expected = x0.detach() - lr * (1 - b2) ** 0.5 / (1 - b1) * (1 - b1) * gradient / (
        ((1 - b2) * gradient**2).sqrt() + eps
    )
    got = nn.keras_adam_refine(mixtures, x0, steps=1, learning_rate=lr, beta1=b1, beta2=b2, epsilon=eps)["x"]
    np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=1e-14, atol=1e-15)


def test_equals_torch_adam_without_epsilon(scene):
    """With epsilon = 0 the Keras form and torch.optim.Adam are the same algorithm."""
    mixtures, x0 = t64(scene["mixtures"]), t64(scene["x0"])
    got = nn.keras_adam_refine(mixtures, x0, steps=30, learning_rate=1e-2, epsilon=0.0)["x"]
    x = x0.clone().requires_grad_(True)
    optimiser = torch.optim.Adam([x], lr=1e-2, betas=(0.9, 0.999), eps=0.0)
    for _ in range(30):
        optimiser.zero_grad()
        nn.refiner_objective(mixtures, x).sum().backward()
        optimiser.step()
    np.testing.assert_allclose(got.numpy(), x.detach().numpy(), rtol=0, atol=1e-10)


def test_frames_are_independent(scene):
    mixtures, x0 = t64(scene["mixtures"]), t64(scene["x0"])
    reference = t64(scene["bone_reference"])
    bones = torch.as_tensor(BONES)
    batch = nn.keras_adam_refine(mixtures, x0, steps=20, bones=bones, bone_reference=reference, bone_weight=0.1)
    for i in (0, 3):
        single = nn.keras_adam_refine(
            mixtures[i], x0[i], steps=20, bones=bones, bone_reference=reference[i], bone_weight=0.1
        )
        np.testing.assert_allclose(batch["x"][i].numpy(), single["x"].numpy(), rtol=0, atol=1e-13)


@pytest.mark.parametrize("bone_weight", [0.0, 0.1])
def test_refine_decreases_the_objective(scene, bone_weight):
    result = nn.keras_adam_refine(
        t64(scene["mixtures"]),
        t64(scene["x0"]),
        bones=torch.as_tensor(BONES),
        bone_reference=t64(scene["bone_reference"]),
        bone_weight=bone_weight,
        history_every=100,
    )
    start, end = result["history_objective"].unbind(-1)
    assert torch.all(end < start - 0.5), (start, end)


# --------------------------------------------------------------------------- the C++ refiner


@pytest.mark.parametrize("bone_weight", [0.0, 0.1])
def test_core_objective_and_gradient_equal_autograd(scene, bone_weight):
    value, gradient = metapose_geom._core.refiner_objective(
        scene["mixtures"], scene["x0"], BONES, scene["bone_reference"], bone_weight
    )
    x = t64(scene["x0"]).requires_grad_(True)
    expected = torch_objective(scene, x, bone_weight)
    (expected_gradient,) = torch.autograd.grad(expected.sum(), x)
    assert value.shape == (6,) and gradient.shape == (6, P)
    np.testing.assert_allclose(value, expected.detach().numpy(), rtol=OBJECTIVE_TOL, atol=OBJECTIVE_TOL)
    np.testing.assert_allclose(gradient, expected_gradient.numpy(), rtol=OBJECTIVE_TOL, atol=OBJECTIVE_TOL)


def test_core_scale_and_its_gradient_equal_autograd_across_the_softplus_range(scene):
    """The core's softplus, its sigmoid slope and their log1p / exp (its own vectorised ones) against
    torch, from scales of 1e-17 to 40: each camera's scale_raw set to one value of the sweep."""
    sweep = np.array([-40.0, -30.0, -5.0, -0.3466, -1e-9, 0.0, 1e-9, 0.3466, 0.9, 5.0, 18.0, 40.0])
    x0 = np.repeat(scene["x0"][:1], len(sweep), axis=0)
    scale_columns = layout.Layout(C, J).scale_raw
    x0[:, scale_columns] = sweep[:, None]
    frames = {name: np.repeat(scene[name][:1], len(sweep), axis=0) for name in ("mixtures", "bone_reference")}
    value, gradient = metapose_geom._core.refiner_objective(frames["mixtures"], x0, BONES, frames["bone_reference"], 0.0)
    x = t64(x0).requires_grad_(True)
    expected = torch_objective(frames, x, 0.0)
    (expected_gradient,) = torch.autograd.grad(expected.sum(), x)
    np.testing.assert_allclose(value, expected.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(gradient[:, scale_columns], expected_gradient.numpy()[:, scale_columns], rtol=1e-9)
    np.testing.assert_allclose(gradient, expected_gradient.numpy(), rtol=OBJECTIVE_TOL, atol=OBJECTIVE_TOL)


@pytest.mark.parametrize("bone_weight", [0.0, 0.1])
def test_core_refine_trajectory_equals_torch(scene, bone_weight):
    steps, learning_rate, beta1, beta2, epsilon, every = 100, 1e-2, 0.9, 0.999, 1e-7, 10
    x, objective, history_x, history_objective = metapose_geom._core.refine(
        scene["mixtures"], scene["x0"], BONES, scene["bone_reference"], bone_weight,
        steps, learning_rate, beta1, beta2, epsilon, every,
    )  # fmt: skip
    expected = nn.keras_adam_refine(
        t64(scene["mixtures"]),
        t64(scene["x0"]),
        steps=steps,
        learning_rate=learning_rate,
        beta1=beta1,
        beta2=beta2,
        epsilon=epsilon,
        bones=torch.as_tensor(BONES),
        bone_reference=t64(scene["bone_reference"]),
        bone_weight=bone_weight,
        history_every=every,
    )
    assert history_x.shape == (6, 11, P) and history_objective.shape == (6, 11)
    for name, got in [("x", x), ("objective", objective), ("history_x", history_x),
                      ("history_objective", history_objective)]:  # fmt: skip
        np.testing.assert_allclose(
            got, expected[name].numpy(), rtol=TRAJECTORY_TOL, atol=TRAJECTORY_TOL, err_msg=name
        )


@pytest.mark.parametrize(("steps", "every"), [(10, 3), (10, 0), (0, 1), (7, 20)])
def test_core_refine_history_convention_equals_torch(scene, steps, every):
    mixtures, x0, reference = scene["mixtures"][:2], scene["x0"][:2], scene["bone_reference"][:2]
    got = metapose_geom._core.refine(mixtures, x0, BONES, reference, 0.1, steps, 1e-2, 0.9, 0.999, 1e-7, every)
    expected = nn.keras_adam_refine(
        t64(mixtures), t64(x0), steps=steps, bones=torch.as_tensor(BONES), bone_reference=t64(reference),
        bone_weight=0.1, history_every=every,
    )  # fmt: skip
    for name, array in zip(["x", "objective", "history_x", "history_objective"], got):
        assert array.shape == tuple(expected[name].shape), name
        np.testing.assert_allclose(
            array, expected[name].numpy(), rtol=TRAJECTORY_TOL, atol=TRAJECTORY_TOL, err_msg=name
        )
