#!/usr/bin/env python3
"""Writes the PyTorch checkpoints the tests read, each with torch.save, from a safetensors reference checkpoint:
the state dict as it is; wrapped as {"state_dict": …} with DataParallel's "module." prefixes and an epoch count;
saved from a timm model (pytorch_model.bin); in float16 and bfloat16; with a non-contiguous (transposed) tensor;
in the legacy pre-1.6 format; one whose pickle calls os.system (it must be refused, never run); and the layout of
Cadene's pretrainedmodels (cadene.pth: a 1001-class head, background first, and Inception-ResNet-v2's classifier
named last_linear). With --only-cadene, that file alone. With --only-module, the state dict of the library's own module
(facenet-pytorch's InceptionResnetV1 for the face model, else timm's) saved by torch.save in both formats, as
module.pt and module-legacy.pt (facenet-pytorch's released files are of the legacy format).

    python scripts/make_pytorch_checkpoints.py REFERENCE.safetensors MODEL OUT_DIR [--only-cadene | --only-module]
"""
import collections
import os
import sys

import timm
import torch
from safetensors.torch import load_file


class Evil:
    """Unpickling this in Python would run `touch <marker>`."""
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def module(model, sd):
    """The library's own module for `model` with the weights `sd`."""
    if model == "inception_resnet_v1_facenet":
        from facenet_pytorch import InceptionResnetV1
        net = InceptionResnetV1(classify=True, num_classes=sd["logits.weight"].shape[0])
    else:
        net = timm.create_model(model, pretrained=False, num_classes=sd[
            "last_linear.weight" if model == "inception_v4" else "classif.weight"].shape[0])
    net.load_state_dict(sd)
    return net


def main():
    reference, model, out = sys.argv[1:4]
    sd = collections.OrderedDict(load_file(reference))
    os.makedirs(out, exist_ok=True)
    if "--only-module" in sys.argv:
        net = module(model, sd)
        torch.save(net.state_dict(), f"{out}/module.pt")
        torch.save(net.state_dict(), f"{out}/module-legacy.pt", _use_new_zipfile_serialization=False)
        return
    cadene = collections.OrderedDict()
    for k, v in sd.items():
        if k.split(".")[0] in ("classif", "last_linear"):
            k = "last_linear." + k.split(".", 1)[1]
            # Class 0, background: never the top class, so that the labels can be compared.
            v = torch.cat([torch.full_like(v[:1], -100.0 if k.endswith("bias") else 0.0), v])
        cadene[k] = v
    torch.save(cadene, f"{out}/cadene.pth")
    if "--only-cadene" in sys.argv:
        return
    torch.save(sd, f"{out}/plain.pt")
    torch.save({"state_dict": {"module." + k: v for k, v in sd.items()}, "epoch": 3}, f"{out}/wrapped.pth")
    if model != "inception_resnet_v1_facenet":
        torch.save(module(model, sd).state_dict(), f"{out}/pytorch_model.bin")
    for dtype in (torch.float16, torch.bfloat16):
        torch.save({k: v.to(dtype) if v.is_floating_point() else v for k, v in sd.items()},
                   f"{out}/{str(dtype).split('.')[-1]}.pt")
    strided = collections.OrderedDict(sd)
    key = max((k for k, v in sd.items() if v.dim() == 2), key=lambda k: sd[k].numel())
    strided[key] = sd[key].t().contiguous().t()  # the same values, stored column-major
    assert not strided[key].is_contiguous()
    torch.save(strided, f"{out}/strided.pt")
    torch.save(sd, f"{out}/legacy.pt", _use_new_zipfile_serialization=False)
    torch.save({"x": Evil(os.path.join(out, "pwned"))}, f"{out}/evil.pt")
    print(out)


if __name__ == "__main__":
    main()
