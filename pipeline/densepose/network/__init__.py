"""The correspondence network, a per-box DensePose chart predictor in plain PyTorch: stages ``images``
(``dataset``: the rendered images it learns from) and ``network`` (``train``: ``fit_network``; ``losses``;
``measures``: DensePose's, GPS), the ``network`` source of stage ``densepose`` (``source``), and ``model``,
the read side of ``models/network.pt``."""
