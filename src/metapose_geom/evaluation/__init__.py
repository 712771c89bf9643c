"""Evaluation tables: S1, S1+IR, the IR oracles and the AniPose baseline on a dataset file.

``metapose-geom evaluate DATASET.h5`` runs :func:`run_evaluation`. For each camera count k (2, 3
and 4 by default) the frames are seen by a subset of k of the file's cameras: the first k
(``subsets="first"``, the default) or every k-subset, with the errors averaged over all of them
(``subsets="all"``). Each method of :data:`METHODS` solves every frame of every subset.

=======================  ===============================================================
module                   what it holds
=======================  ===============================================================
:mod:`.methods`          :class:`MethodSpec`, the method table :data:`METHODS`
:mod:`.data`             the file's fields in memory, camera subsets, each method's views
:mod:`.scoring`          :class:`Row`, :class:`Evaluation`, :func:`score`, :func:`solve_timed`
:mod:`.anipose_runs`     AniPose tasks, run in this process or a pool of processes
:mod:`.cache`            :class:`AniPoseCache`: AniPose's results on disk, found by a hash
:mod:`.report`           the Markdown tables, the CSV, the plots, the report folder
:mod:`.runs`             :func:`evaluate` and :func:`run_evaluation`
=======================  ===============================================================

The oracles rebuild each frame's :class:`~metapose_geom.synth.Scene` from the file's ground-truth
fields (:func:`metapose_geom.datasets.scenes.scene_from_fields`) and call
:meth:`~metapose_geom.synth.Scene.ablated_views`, so they need a file with ground truth
(``metapose-geom make-dataset`` writes it). AniPose is the slow part (seconds per frame), so its
results can be kept as they come in (``cache``; :func:`run_evaluation` keeps them in
``OUT/anipose-cache.bin``). Names are imported from their modules on first use, so that
``import metapose_geom.evaluation`` loads neither h5py nor the solver.

Example::

    from metapose_geom.evaluation import evaluate, format_markdown
    result = evaluate("data/synthetic_test_4cam.h5", cameras=(2, 3, 4), frames=100,
                      methods=("s1", "ir", "ir-gt-init"))
    print(format_markdown(result))
"""

from __future__ import annotations

from .._lazy import lazy_attributes

_LAZY = {
    **dict.fromkeys(("ABLATION_METHODS", "DEFAULT_METHODS", "METHODS", "MethodSpec", "S2_IR_STEPS"), "methods"),
    **dict.fromkeys(("EvaluationData", "camera_subsets", "load_data"), "data"),
    **dict.fromkeys(("PCK_THRESHOLD_MM", "Evaluation", "Row", "score", "solve_timed"), "scoring"),
    **dict.fromkeys(("AniPoseTask",), "anipose_runs"),
    **dict.fromkeys(("ANIPOSE_CACHE_NAME", "AniPoseCache"), "cache"),
    **dict.fromkeys(("CSV_COLUMNS", "format_markdown", "plot_error_vs_cameras", "plot_per_joint_error",
                     "write_csv", "write_report"), "report"),
    **dict.fromkeys(("evaluate", "run_evaluation"), "runs"),
}
__getattr__ = lazy_attributes(__name__, _LAZY)

__all__ = list(_LAZY)
