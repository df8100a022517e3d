"""The correspondence network: a per-box DensePose chart predictor in plain PyTorch, trained on the synthetic
images (issue 15, in progress: the network and its losses; its training stage and the ``network`` source
of the densepose stage are still to come)."""
