"""Run by tests/test_train.py under ``torchrun --nproc_per_node=2``: trains, then saves this rank's weights.

    torchrun --nproc_per_node=2 tests/ddp_worker.py PARAMS KEYPOINTS TEMPLATE LBO OUTDIR
"""

import os
import sys

import torch

from pipeline.core.config import load_params
from pipeline.train.loop import train

params, keypoints, template, lbo, outdir = sys.argv[1:6]
result = train(load_params(params), keypoints, template, lbo, os.path.join(outdir, "model.pt"))
torch.save(result.objective.state_dict(), os.path.join(outdir, f"rank{os.environ['RANK']}.pt"))
