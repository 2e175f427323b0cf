#!/usr/bin/env python3
"""Prints timm's top-5 class indices (JSON, one list per sample) for a model, a safetensors checkpoint and an
(N, 3, H, W) .npy input — used by the tests to check that `inception classify` is exactly `inception preprocess`,
then the network, then labels. Usage: timm_top5.py MODEL WEIGHTS INPUT"""
import json
import sys

import numpy as np
import timm
import torch
from safetensors.torch import load_file

name, weights, x = sys.argv[1:4]
state = load_file(weights)
classes = state[{"inception_v4": "last_linear.weight", "inception_resnet_v2": "classif.weight"}[name]].shape[0]
model = timm.create_model(name, pretrained=False, num_classes=classes)
model.load_state_dict(state)
model.eval()
with torch.no_grad():
    y = model(torch.from_numpy(np.load(x)))
print(json.dumps(y.topk(5).indices.tolist()))
