"""The correspondence network: a per-box DensePose chart predictor in plain PyTorch (``network``), its losses,
its training on the synthetic images (``train``) and DensePose's measures (``measures``). Its DVC stage and
the ``network`` source of the densepose stage are still to come (issue 15)."""
