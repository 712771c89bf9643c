"""The stage-2 network in torch: ``x_{i+1} = x_i + f_i(inputs(x_i))``, equivariant over cameras.

The shape, the inputs and their order are :class:`metapose_geom.stage2.ModelConfig` (read its
module docstring); :mod:`metapose_geom.stage2.forward` is the same computation in numpy, without
torch, and the tests hold the two equal. Parameter and buffer names are the weights file's
tensor names: ``stages.{i}.trunk.{l}.weight`` / ``.bias`` for the l-th dense layer of the spec,
``stages.{i}.camera_head.*``, ``stages.{i}.pose_head.{l}.*`` (the last one is the pose output),
and the buffers ``stages.{i}.shared_mean``, ``shared_std``, ``camera_mean``, ``camera_std``.
Every shape below is for B frames of C cameras, J joints and K components.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .. import layout
from ..stage2.config import CAMERA_WIDTH, SHARED_INPUTS, STD_EPSILON, ModelConfig
from .geometry import project_weak, rot6d_to_matrix, softplus
from .objective import refiner_objective

__all__ = ["Stage", "Stage2Model", "context_stats", "stage_inputs"]


def stage_inputs(config: ModelConfig, mixtures: Tensor, x: Tensor, step: int,
                 bones: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """mixtures (B, C, J, K, 4), x (B, P), the stage index, relative bone lengths (B, nB) or None
    -> shared (B, Ds), camera (B, C, Dc): the raw (unstandardised) inputs named by ``config.inputs``.

    ``bones`` is needed only when ``"bones"`` is an input (ValueError otherwise).
    """
    B, C, J, K = mixtures.shape[:4]
    pose, rot6d, scale_raw, shift = layout.unpack(x, C, J)
    projections = None
    if "projections" in config.inputs or "objective" in config.inputs:
        projections = project_weak(pose, rot6d_to_matrix(rot6d), softplus(scale_raw), shift)  # (B, C, J, 2)
    shared: list[Tensor] = []
    camera: list[Tensor] = []
    for name in config.inputs:
        if name == "pose":
            shared.append(pose.reshape(B, 3 * J))
        elif name == "objective":
            shared.append(refiner_objective(mixtures, x)[:, None])
        elif name == "step":
            shared.append(x.new_full((B, 1), float(step)))
        elif name == "bones":
            if bones is None:
                raise ValueError("bones: this model takes the reference bone lengths as an input; pass them")
            shared.append(bones / bones.mean(dim=-1, keepdim=True))
        elif name == "camera":
            camera.append(torch.cat([rot6d, scale_raw[..., None], shift], dim=-1))
        elif name == "mixtures":
            features = torch.cat([mixtures[..., :3], torch.log(mixtures[..., 3:4])], dim=-1)
            camera.append(features.reshape(B, C, J * K * 4))
        elif name == "projections":
            camera.append(projections.reshape(B, C, 2 * J))
    empty = x.new_zeros((B, 0))
    return (torch.cat(shared, dim=-1) if shared else empty), torch.cat(camera, dim=-1)


def context_stats(rows: Tensor) -> tuple[Tensor, Tensor]:
    """rows (B, C, D) -> mean and standard deviation over cameras (B, 1, D) each, the population
    standard deviation ``sqrt(mean((h - mean)^2) + STD_EPSILON)``."""
    mean = rows.mean(dim=-2, keepdim=True)
    std = torch.sqrt(((rows - mean) ** 2).mean(dim=-2, keepdim=True) + STD_EPSILON)
    return mean, std


class Stage(nn.Module):
    """One step ``f_i``: raw inputs -> the update of ``x`` (B, P)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.layers = config.layers
        flat = config.kind == "flat"
        cameras = config.num_cameras if flat else 1
        width = config.shared_width + cameras * config.camera_width
        trunk = []
        for item in self.layers:
            if item == "ccat":
                width *= 3
            elif isinstance(item, int):
                trunk.append(nn.Linear(width, item))
                width = item
        self.trunk = nn.ModuleList(trunk)
        self.camera_head = nn.Linear(width, cameras * CAMERA_WIDTH)
        heads, head_width = [], width
        for item in config.pose_head:
            heads.append(nn.Linear(head_width, item))
            head_width = item
        heads.append(nn.Linear(head_width, config.pose_width))
        self.pose_head = nn.ModuleList(heads)
        # the outputs start at zero: an untrained stage leaves x as it is
        for last in (self.camera_head, self.pose_head[-1]):
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)
        self.register_buffer("shared_mean", torch.zeros(config.shared_width))
        self.register_buffer("shared_std", torch.ones(config.shared_width))
        self.register_buffer("camera_mean", torch.zeros(config.camera_width))
        self.register_buffer("camera_std", torch.ones(config.camera_width))

    def forward(self, shared: Tensor, camera: Tensor) -> Tensor:
        """shared (B, Ds), camera (B, C, Dc) raw inputs -> the update (B, P) in the layout of x."""
        B, C = camera.shape[:2]
        J = self.config.num_joints
        shared = (shared - self.shared_mean) / self.shared_std
        camera = (camera - self.camera_mean) / self.camera_std
        if self.config.kind == "flat":
            h = torch.cat([shared, camera.reshape(B, -1)], dim=-1)
        else:
            h = torch.cat([shared[:, None, :].expand(B, C, shared.shape[-1]), camera], dim=-1)
        dense = iter(self.trunk)
        for item in self.layers:
            if item == "ccat":
                mean, std = context_stats(h)
                h = torch.cat([h, mean.expand_as(h), std.expand_as(h)], dim=-1)
            elif item == "cn":
                mean, std = context_stats(h)
                h = (h - mean) / std
            else:
                h = torch.selu(next(dense)(h))
        if self.config.kind == "flat":
            camera_update = self.camera_head(h).reshape(B, C, CAMERA_WIDTH)
            embedding = h
        else:
            camera_update = self.camera_head(h)  # (B, C, 10)
            embedding = h.mean(dim=-2)
        for layer in self.pose_head[:-1]:
            embedding = torch.selu(layer(embedding))
        pose_update = self.pose_head[-1](embedding)  # (B, 3 J)
        return layout.pack(pose_update.reshape(B, J, 3), camera_update[..., 0:6], camera_update[..., 6],
                           camera_update[..., 7:10])


class Stage2Model(nn.Module):
    """The stages ``f_0 .. f_{n-1}`` of ``config`` (float32 parameters; ``.double()`` for float64)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.stages = nn.ModuleList(Stage(config) for _ in range(config.num_stages))

    def inputs(self, mixtures: Tensor, x: Tensor, step: int, bones: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """:func:`stage_inputs` for this model's config."""
        return stage_inputs(self.config, mixtures, x, step, bones)

    def step(self, index: int, mixtures: Tensor, x: Tensor, bones: Tensor | None = None) -> Tensor:
        """x_{i+1} = x_i + f_i(inputs(x_i)) for stage ``index``: (B, P) -> (B, P)."""
        shared, camera = self.inputs(mixtures, x, index, bones)
        return x + self.stages[index](shared, camera)

    def forward(self, mixtures: Tensor, x: Tensor, bones: Tensor | None = None, stages: int | None = None,
                detach: bool = False) -> list[Tensor]:
        """mixtures (B, C, J, K, 4) box units, x0 (B, P) (stage 1's start) -> [x_1, .., x_n] (B, P) each.

        ``stages`` runs only the first n; ``detach`` cuts the graph between stages (each stage then
        trains on its own, as the original). ``bones`` (B, nB) the reference bone lengths, for a
        model with the ``bones`` input.
        """
        self.config.check_cameras(mixtures.shape[1])
        count = len(self.stages) if stages is None else stages
        outputs = []
        for index in range(count):
            x = self.step(index, mixtures, x.detach() if detach else x, bones)
            outputs.append(x)
        return outputs
