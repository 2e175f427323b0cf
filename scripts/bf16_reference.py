#!/usr/bin/env python3
"""bf16 as `--precision bf16` defines it, computed by PyTorch, for PrecisionTests: every Conv2d's weights with its
BatchNorm folded (the multiplier and shift in float64, the product in float32, as the engine folds) and rounded to
bfloat16 (to nearest even), its input rounded to bfloat16 at the multiply (a forward pre-hook), the sums and every
other operation — bias, ReLU, pools, concatenation, residual scale and addition, linear layers — in float32.

Usage: bf16_reference.py MODEL WEIGHTS.safetensors OUT_DIR X.npy [X2.npy …]
Writes OUT_DIR/<x stem>_features.npy (timm: pooled features before the classifier; facenet: the embedding), and
OUT_DIR/<x stem>_features64.npy: the same bf16 values multiplied and summed in float64 instead — an equally valid
order of summation, whose distance from the float32 result measures how far two correct bf16 implementations drift
apart (a sum that differs in its last bit can round to the neighbouring bf16 at the next layer's input).
"""
import os
import sys

import numpy as np
import torch
from safetensors.torch import load_file


def create(name, weights):
    state = load_file(weights)
    if name == "inception_resnet_v1_facenet":
        from facenet_pytorch import InceptionResnetV1
        model = InceptionResnetV1(classify=True, num_classes=state["logits.weight"].shape[0])
    else:
        import timm
        model = timm.create_model(name, pretrained=False, num_classes=state[
            "last_linear.weight" if name == "inception_v4" else "classif.weight"].shape[0])
    model.load_state_dict(state, strict=True)
    model.classify = False  # facenet: the embedding
    return model.eval()


def fold_and_round(model, dtype):
    """Each conv + BatchNorm as one conv (BatchNorm's activation kept), every conv's weights rounded to bf16; the
    model then computes in `dtype`."""
    for parent in list(model.modules()):
        conv, bn = getattr(parent, "conv", None), getattr(parent, "bn", None)
        if isinstance(conv, torch.nn.Conv2d) and isinstance(bn, torch.nn.BatchNorm2d):
            s64 = bn.weight.double() / (bn.running_var.double() + bn.eps).sqrt()
            shift = (bn.bias.double() - bn.running_mean.double() * s64).float()
            with torch.no_grad():
                conv.weight.copy_(conv.weight.float() * s64.float()[:, None, None, None])
                bias = shift if conv.bias is None else shift + conv.bias.float() * s64.float()
            conv.bias = torch.nn.Parameter(bias)
            # timm's BatchNormAct2d carries its ReLU; facenet's BatchNorm2d is followed by a ReLU module.
            parent.bn = torch.nn.Sequential(bn.drop, bn.act) if hasattr(bn, "act") else torch.nn.Identity()
    model.to(dtype)
    for m in model.modules():
        if isinstance(m, torch.nn.Conv2d):
            with torch.no_grad():
                m.weight.copy_(m.weight.bfloat16().to(dtype))
            m.register_forward_pre_hook(lambda _, inputs: (inputs[0].bfloat16().to(dtype),))


def features(name, model, x):
    if name == "inception_resnet_v1_facenet":
        return model(x)
    return model.forward_head(model.forward_features(x), pre_logits=True)


def main():
    name, weights, out, inputs = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
    torch.set_num_threads(2)
    os.makedirs(out, exist_ok=True)
    for dtype, suffix in [(torch.float32, ""), (torch.float64, "64")]:
        model = create(name, weights)
        fold_and_round(model, dtype)
        with torch.no_grad():
            for path in inputs:
                y = features(name, model, torch.from_numpy(np.load(path)).to(dtype))
                stem = os.path.splitext(os.path.basename(path))[0]
                np.save(os.path.join(out, f"{stem}_features{suffix}.npy"), y.numpy().astype(np.float32))


if __name__ == "__main__":
    main()
