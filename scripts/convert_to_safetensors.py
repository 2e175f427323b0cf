#!/usr/bin/env python3
"""Converts a PyTorch checkpoint (.pt, .pth, .bin: a state dict, or one wrapped as {"state_dict": …} or
{"model": …}, DataParallel's "module." prefixes removed) into safetensors, which `inception --weights` reads.

    python3 scripts/convert_to_safetensors.py 20180402-114759-vggface2.pt facenet.safetensors

Needs torch and safetensors (scripts/setup_reference_venv.sh installs both). Loads with weights_only=True, so the
pickle cannot run code.
"""
import sys

import torch
from safetensors.torch import save_file


def state_dict(obj):
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    return {k[len("module."):] if k.startswith("module.") else k: v.contiguous() for k, v in obj.items()
            if isinstance(v, torch.Tensor)}


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    tensors = state_dict(torch.load(sys.argv[1], map_location="cpu", weights_only=True))
    save_file({k: v.float() if v.is_floating_point() else v for k, v in tensors.items()}, sys.argv[2],
              metadata={"format": "pt"})
    print(f"{sys.argv[2]}: {len(tensors)} tensors")


if __name__ == "__main__":
    main()
