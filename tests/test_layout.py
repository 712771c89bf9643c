"""layout: the solution vector's slices, pack/unpack (numpy and torch) and the camera-0 frame."""

from __future__ import annotations

import numpy as np
import pytest

from metapose_geom import geometry, layout

C, J = 3, 5


def test_slices_tile_the_vector_in_order():
    lay = layout.Layout(C, J)
    slices = [lay.pose, lay.rot6d, lay.scale_raw, lay.shift]
    assert slices[0].start == 0 and slices[-1].stop == lay.size == 3 * J + 10 * C
    assert all(a.stop == b.start for a, b in zip(slices, slices[1:]))
    assert [s.stop - s.start for s in slices] == [3 * J, 6 * C, C, 3 * C]


def test_unpack_reads_the_documented_order(rng):
    x = rng.normal(size=(2, 4, layout.solution_size(C, J)))
    pose, rot6d, scale_raw, shift = layout.unpack(x, C, J)
    flat = x.reshape(-1, x.shape[-1])[5]  # frame (1, 1)
    np.testing.assert_array_equal(pose[1, 1].ravel(), flat[: 3 * J])
    np.testing.assert_array_equal(rot6d[1, 1].ravel(), flat[3 * J : 3 * J + 6 * C])
    np.testing.assert_array_equal(scale_raw[1, 1], flat[3 * J + 6 * C : 3 * J + 7 * C])
    np.testing.assert_array_equal(shift[1, 1].ravel(), flat[3 * J + 7 * C :])
    assert np.shares_memory(pose, x)  # views, not copies


def test_pack_inverts_unpack_numpy_and_torch(rng):
    torch = pytest.importorskip("torch")
    x = rng.normal(size=(4, layout.solution_size(C, J)))
    np.testing.assert_array_equal(layout.pack(*layout.unpack(x, C, J)), x)
    t = torch.tensor(x, requires_grad=True)
    packed = layout.pack(*layout.unpack(t, C, J))
    assert torch.equal(packed, t)
    packed.sum().backward()
    assert torch.equal(t.grad, torch.ones_like(t))


@pytest.mark.parametrize("bad", [layout.solution_size(C, J) - 1, layout.solution_size(C, J) + 3])
def test_wrong_length_is_an_error(bad):
    with pytest.raises(ValueError, match=rf"x: expected shape \(\.\.\., {layout.solution_size(C, J)}\)"):
        layout.unpack(np.zeros((2, bad)), C, J)


def test_pack_rejects_mismatched_parts(rng):
    pose, rot6d, scale_raw, shift = layout.unpack(rng.normal(size=(2, layout.solution_size(C, J))), C, J)
    with pytest.raises(ValueError, match="scale_raw: expected shape"):
        layout.pack(pose, rot6d, scale_raw[:1], shift)


def test_scale_round_trip(rng):
    scale = rng.uniform(0.05, 20.0, size=10)
    np.testing.assert_allclose(layout.scale_from_raw(layout.raw_from_scale(scale)), scale, rtol=1e-13)


def test_in_camera0_keeps_every_projection(rng):
    x = rng.normal(size=(6, layout.solution_size(C, J)))
    pose, rot6d, scale_raw, shift = layout.unpack(x, C, J)
    before = geometry.project_weak(pose, geometry.rot6d_to_matrix(rot6d), layout.scale_from_raw(scale_raw), shift)
    frame = layout.in_camera0(x, C, J)
    after = geometry.project_weak(frame.pose, frame.rotation, frame.scale, frame.shift)
    np.testing.assert_allclose(after, before, atol=1e-12)
    np.testing.assert_allclose(frame.rotation[:, 0], np.broadcast_to(np.eye(3), (6, 3, 3)), atol=1e-14)
    np.testing.assert_allclose(frame.scale[:, 0], 1.0, rtol=1e-15)
    np.testing.assert_allclose(np.linalg.det(frame.rotation), 1.0, atol=1e-12)


def test_layout_of_is_built_once_and_checks_like_the_constructor():
    assert layout.Layout.of(C, J) is layout.Layout.of(C, J)
    assert layout.Layout.of(np.int64(C), J) == layout.Layout(C, J)
    assert type(layout.Layout.of(np.int64(C), J).num_cameras) is int
    for bad in (True, 0, 2.0, [C]):
        with pytest.raises(ValueError, match="num_cameras: expected an integer >= 1"):
            layout.Layout.of(bad, J)
