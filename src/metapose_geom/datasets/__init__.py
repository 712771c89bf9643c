"""On-disk datasets (HDF5, h5py): the format, a validating writer and reader, and the synthetic build.

=====================  ===================================================================
module                 what it holds
=====================  ===================================================================
:mod:`.schema`         the fields (shapes, dtypes, units), the format version, file checks
:mod:`.hdf5`           :class:`DatasetWriter` (commits chunk by chunk), :class:`DatasetReader`
:mod:`.files`          who holds a file, whether it can be written, setting a damaged one aside
:mod:`.solutions`      solution files: a method's results per frame of a dataset (``solve-dataset``)
:mod:`.scenes`         a synthetic Scene to one frame's fields and back
:mod:`.synthetic`      the synthetic build: :func:`make_datasets`, :func:`build_synthetic_dataset`
=====================  ===================================================================

Reading a file needs h5py and nothing of the solver or the synthetic generator: the names of
:mod:`.scenes` and :mod:`.synthetic` are imported on first use.

Example::

    from metapose_geom.datasets import DatasetReader, make_datasets
    paths = make_datasets("data", train_frames=100, test_frames=20, cameras=(4,))
    with DatasetReader("data/synthetic_test_4cam.h5") as reader:
        for batch in reader.frames(batch_size=64, fields=("heatmaps", "ir_pose3d")):
            batch["heatmaps"].shape                 # (B, 4, 17, 4, 4)
        views = reader.views(0)                     # a Views for metapose_geom.solve
"""

from __future__ import annotations

from .._lazy import lazy_attributes
from .files import DamagedBlockError, DamagedFileError, DatasetInUseError
from .hdf5 import DatasetReader, DatasetWriter, committed_frames
from .schema import FIELDS, FORMAT_NAME, FORMAT_VERSION, REQUIRED_FIELDS, FieldSpec, field_shape

_LAZY = {
    **dict.fromkeys(("SCENE_FIELDS", "cameras_from_fields", "scene_fields", "scene_from_fields"), "scenes"),
    **dict.fromkeys(("SPLIT_SEED_OFFSETS", "SYNTHETIC_FIELDS", "build_synthetic_dataset", "dataset_path",
                     "make_datasets", "split_seed", "synthetic_frames", "synthetic_scene"), "synthetic"),
}
__getattr__ = lazy_attributes(__name__, _LAZY)

__all__ = [
    "FIELDS",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "REQUIRED_FIELDS",
    "DamagedBlockError",
    "DamagedFileError",
    "DatasetInUseError",
    "DatasetReader",
    "DatasetWriter",
    "FieldSpec",
    "committed_frames",
    "field_shape",
    *_LAZY,
]
