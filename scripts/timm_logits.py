#!/usr/bin/env python3
"""Loads a checkpoint into timm strictly (the class count taken from the file) and prints the logits for an
(N, 3, H, W) float32 .npy as JSON. Used by the tests to check that `inception train` writes checkpoints timm reads.

Usage: timm_logits.py MODEL CHECKPOINT X.npy"""
import json
import sys

import numpy as np
import timm
import torch
from safetensors.torch import load_file

name, checkpoint, x = sys.argv[1:4]
state = load_file(checkpoint)
classes = next(v.shape[0] for k, v in state.items() if k in ("last_linear.weight", "classif.weight"))
model = timm.create_model(name, pretrained=False, num_classes=classes)
model.load_state_dict(state, strict=True)
with torch.no_grad():
    print(json.dumps(model.eval()(torch.from_numpy(np.load(x))).tolist()))
