"""Random stage-2 models for the tests: configs that exercise every branch, weights with
non-trivial normalisation buffers and non-zero output layers, and synthetic inputs.

Only :func:`random_tensors` needs no torch; the torch model builders import it when called.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from metapose_geom import synth
from metapose_geom._core_loader import core
from metapose_geom.skeletons import H36M_17
from metapose_geom.stage2.config import ModelConfig
from metapose_geom.stage2.weights import expected_shapes

SEED = 20220619

#: small models that reach every branch of the forward pass (names are test ids)
CONFIGS: dict[str, ModelConfig] = {
    # ccat then a dense layer (the split product), cn, two stages
    "equivariant": ModelConfig(num_stages=2, spec="40,ccat,32,cn,24", pose_head=(32, 16)),
    # ccat after cn, a spec that ends with ccat (the camera head on [h | mean | std]), three stages
    "ccat-last": ModelConfig(num_stages=3, spec="24,cn,ccat,20,ccat", pose_head=(16,)),
    # no shared input at all, no mixtures
    "camera-only": ModelConfig(num_stages=1, spec="32,ccat,24", inputs=("camera", "projections")),
    # no objective and no projections (no core call in the inputs)
    "no-objective": ModelConfig(num_stages=2, spec="32,cn,24", inputs=("pose", "step", "mixtures")),
    "bones": ModelConfig(num_stages=2, spec="32,ccat,24",
                         inputs=("pose", "objective", "step", "bones", "camera", "mixtures", "projections")),
}
FLAT = ModelConfig(num_stages=2, kind="flat", num_cameras=3, spec="48,32", pose_head=(24,))


def scene_inputs(num_cameras: int, frames: int, seed: int = SEED) -> dict[str, np.ndarray]:
    """Synthetic frames: mixtures (B, C, 17, 4, 4) box units, x0 (B, P) stage 1, bones (B, 16)
    reference bone lengths (the true poses' own, in mm)."""
    scenes = synth.make_scenes(frames, num_cameras=num_cameras, seed=seed)
    views = [scene.views() for scene in scenes]
    mixtures = np.stack([v.mixtures for v in views])
    x0 = core.stage1(np.stack([v.mono3d for v in views]))
    bones = np.stack([H36M_17.bone_lengths(scene.pose3d) for scene in scenes])
    return {"mixtures": mixtures, "x0": x0, "bones": bones, "views": views}


def random_tensors(config: ModelConfig, seed: int = SEED, head_scale: float = 0.05) -> dict[str, np.ndarray]:
    """float64 tensors of every name of ``config`` without torch: dense weights scaled as
    torch's default init, buffers with means N(0, 0.3) and standard deviations in [0.5, 2]."""
    rng = np.random.default_rng(seed)
    tensors = {}
    for name, shape in expected_shapes(config).items():
        if name.endswith("_std"):
            value = rng.uniform(0.5, 2.0, size=shape)
        elif name.endswith("_mean"):
            value = rng.normal(0.0, 0.3, size=shape)
        else:
            fan_in = shape[1] if name.endswith("weight") else expected_shapes(config)[name[:-4] + "weight"][1]
            scale = head_scale if _is_output(name, config) else 1.0
            value = scale * rng.uniform(-1.0, 1.0, size=shape) / np.sqrt(fan_in)
        tensors[name] = value
    return tensors


def _is_output(name: str, config: ModelConfig) -> bool:
    return ".camera_head." in name or f".pose_head.{len(config.pose_head)}." in name


def random_torch_model(config: ModelConfig, inputs: dict[str, np.ndarray], seed: int = SEED) -> Any:
    """A float64 ``Stage2Model`` of ``config`` with torch's default init for the hidden layers,
    output layers re-drawn (the model zero-initialises them), and each stage's normalisation
    buffers set near the statistics of ``inputs`` at x0 (mean off by 0.3 std, std times 0.5 .. 2),
    so every layer works in a non-trivial range."""
    import torch

    from metapose_geom.nn.model import Stage2Model

    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed + 1)
    model = Stage2Model(config).double()
    mixtures = torch.as_tensor(inputs["mixtures"])
    x0 = torch.as_tensor(inputs["x0"])
    bones = torch.as_tensor(inputs["bones"])
    with torch.no_grad():
        for index, stage in enumerate(model.stages):
            shared, camera = model.inputs(mixtures, x0, index, bones)
            for raw, mean, std in ((shared, stage.shared_mean, stage.shared_std),
                                   (camera.reshape(-1, camera.shape[-1]), stage.camera_mean, stage.camera_std)):
                if raw.shape[-1] == 0:
                    continue
                spread = raw.std(dim=0).clamp_min(0.1)
                noise = torch.randn(mean.shape, generator=generator, dtype=torch.float64)
                mean.copy_(raw.mean(dim=0) + 0.3 * spread * noise)
                std.copy_(spread * torch.empty(std.shape, dtype=torch.float64).uniform_(0.5, 2.0, generator=generator))
            for last in (stage.camera_head, stage.pose_head[-1]):
                bound = 0.3 / np.sqrt(last.weight.shape[1])
                last.weight.uniform_(-bound, bound, generator=generator)
                last.bias.uniform_(-0.02, 0.02, generator=generator)
    return model


def tensors_of(model: Any) -> dict[str, np.ndarray]:
    """A torch model's state dict as float64 numpy arrays (the weights file's names)."""
    return {name: value.detach().double().numpy().copy() for name, value in model.state_dict().items()}


def permute_cameras(x: np.ndarray, order: np.ndarray, num_cameras: int, num_joints: int) -> np.ndarray:
    """x (B, P) with its cameras' parts taken in ``order`` (the pose part unchanged)."""
    from metapose_geom import layout

    pose, rot6d, scale_raw, shift = layout.unpack(x, num_cameras, num_joints)
    return layout.pack(pose, rot6d[:, order], scale_raw[:, order], shift[:, order])
