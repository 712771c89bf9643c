"""The stage-2 weights shipped with metapose-geom (package data, no code).

``default.safetensors`` and ``default.json`` here (:mod:`metapose_geom.stage2.weights`) are what
``solve(views, method="metapose")`` runs without a ``weights`` option
(:meth:`metapose_geom.stage2.forward.Stage2Network.load` finds them through
``importlib.resources``). Until they are committed, that call is a ValueError saying so.
"""
