"""The stage-2 weights shipped with metapose-geom (package data, no code).

``default.safetensors`` and ``default.json`` here (:mod:`metapose_geom.stage2.weights`) are what
``solve(views, method="metapose")`` runs without a ``weights`` option
(:meth:`metapose_geom.stage2.forward.Stage2Network.load` finds them through
``importlib.resources`` and checks the ``.safetensors`` file against the sha256 in the ``.json``).
They were trained by ``metapose-geom train data/synthetic_train_{2,3,4,5,6}cam.h5 --out DIR
--threads 1`` (README, "Stage 2"); the recipe is in the ``.json``'s notes.
"""
