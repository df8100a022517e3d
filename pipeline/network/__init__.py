"""Stage ``network``: the correspondence network, a per-box DensePose chart predictor in plain PyTorch (``model``),
its losses (``losses``), batches of the images it learns from (``dataset``), training (``train``: ``fit_network``)
and DensePose's measures, GPS (``measures``); ``checkpoint`` is its read side (``models/network.pt``: load and run it),
what the densepose ``network`` source imports."""
