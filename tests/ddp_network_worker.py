"""Run by tests/network/test_network_stage.py under ``torchrun --nproc_per_node=2``: trains the correspondence
network on its slice of each batch, then saves this rank's weights.

    torchrun --nproc_per_node=2 tests/ddp_network_worker.py IMAGES OUTDIR
"""

import os
import sys

import numpy as np
import torch

from pipeline.core.stage import process_group
from pipeline.images.store import open_images
from pipeline.network.dataset import CropBatches
from pipeline.network.train import train_network

images, outdir = sys.argv[1:3]
device, rank, world, _ = process_group("cpu")
root = open_images(images)
batches = CropBatches(root, np.flatnonzero(root["split"][:] == 0), 4, seed=0)
net, history = train_network(batches, 4, width=4, seed=0, device=device, log_every=2, rank=rank, world=world)
torch.save({"model": net.state_dict(), "losses": [h["loss"] for h in history]},
           os.path.join(outdir, f"rank{rank}.pt"))
