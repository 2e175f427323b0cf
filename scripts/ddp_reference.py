"""PyTorch's DistributedDataParallel (gloo, CPU) as the reference for `mpirun -np N inception train`.

  prepare DATA START.safetensors INIT.safetensors [SIZE=75] [--duplicate]
      DATA: the reference photos as SIZE×SIZE PNGs (each twice with --duplicate, for more steps) in two class folders (square and at the input size, so that
      `--crop-area 1 --no-flip` leaves them as they are and both sides see the same pixels). START: INIT (timm's
      key names, from `inception init`) with BatchNorm randomised (γ in [0.2, 0.4], β in [0.3, 0.6]).
  run DATA START.safetensors OUT.safetensors --ranks N --batch B --steps S --seed SEED --lr LR [--dtype float64]
      N processes of timm's inception_v4 under DDP (per-replica BatchNorm, its default), SGD with momentum 0.9,
      cross-entropy with label smoothing 0.1, rank 0's state dict after S steps to OUT. Each rank's batches are
      ours: the epoch's order shuffled as our Trainer shuffles it (SplitMix64, Fisher–Yates, from the seed), rank
      r taking positions r, r + N, … (DistributedSampler's split); a new order every epoch.
"""
import os
import sys

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from PIL import Image
from safetensors.torch import load_file, save_file

MASK = (1 << 64) - 1


def splitmix(state):
    state = (state + 0x9E3779B97F4A7C15) & MASK
    z = state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return state, z ^ (z >> 31)


def order(count, seed, epoch=1):
    """Our Trainer.shuffled(epoch:)."""
    indices, state = list(range(count)), (seed + epoch * 0x9E3779B9) & MASK
    for i in range(count - 1, 0, -1):
        state, r = splitmix(state)
        j = r % (i + 1)
        indices[i], indices[j] = indices[j], indices[i]
    return indices


def samples(data):
    """Our ImageFolder: class folders sorted, their images sorted."""
    classes = sorted(d for d in os.listdir(data) if os.path.isdir(os.path.join(data, d)))
    return [(os.path.join(data, c, f), label) for label, c in enumerate(classes)
            for f in sorted(os.listdir(os.path.join(data, c))) if f.lower().endswith((".png", ".jpg", ".jpeg"))]


def prepare(data, start, init, size=75, duplicate=False):
    photos = os.path.join(os.environ.get("INCEPTION_REFERENCE_DIR", ".reference"), "images")
    files = sorted(f for f in os.listdir(photos) if f.endswith((".png", ".jpg")))
    for i, f in enumerate(files):
        folder = os.path.join(data, "cats" if i % 2 == 0 else "dogs")
        os.makedirs(folder, exist_ok=True)
        image = Image.open(os.path.join(photos, f)).convert("RGB").resize((size, size), Image.BICUBIC)
        for suffix in ("", "_b") if duplicate else ("",):
            image.save(os.path.join(folder, os.path.splitext(f)[0] + suffix + ".png"))
    generator = torch.Generator().manual_seed(7)
    state = load_file(init)
    for k, v in state.items():
        if k.endswith(".bn.weight") or (k.endswith(".weight") and v.dim() == 1):
            state[k] = torch.empty_like(v).uniform_(0.2, 0.4, generator=generator)
        elif k.endswith(".bn.bias") or (k.endswith(".bias") and "linear" not in k and v.dim() == 1):
            state[k] = torch.empty_like(v).uniform_(0.3, 0.6, generator=generator)
    save_file(state, start, metadata={"format": "pt"})


def batch(items, positions):
    pixels = [np.asarray(Image.open(items[p][0]).convert("RGB"), dtype=np.float32) / 255 for p in positions]
    x = torch.from_numpy((np.stack(pixels) - 0.5) / 0.5).permute(0, 3, 1, 2).contiguous()
    return x, torch.tensor([items[p][1] for p in positions])


def worker(rank, args):
    data, start, out, ranks, size, steps, seed, lr, dtype = args
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=os.environ.get("DDP_PORT", "29533"))
    dist.init_process_group("gloo", rank=rank, world_size=ranks)
    torch.manual_seed(0)
    torch.set_num_threads(1)
    import timm
    model = timm.create_model("inception_v4", pretrained=False, num_classes=2, drop_rate=0.0)
    model.load_state_dict(load_file(start))
    model = model.to(dtype).train()
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=0.0)
    criterion = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
    items = samples(data)
    per_rank = (len(items) + ranks - 1) // ranks
    per_epoch = per_rank // size
    for step in range(steps):
        epoch_order = order(len(items), seed, epoch=1 + step // per_epoch)
        positions = [epoch_order[(rank + ranks * k) % len(items)] for k in range(per_rank)]
        first = step % per_epoch * size
        x, y = batch(items, positions[first:first + size])
        optimizer.zero_grad()
        criterion(ddp(x.to(dtype)), y).backward()
        optimizer.step()
    if rank == 0:
        save_file({k: (v.float() if v.is_floating_point() else v).contiguous() for k, v in model.state_dict().items()},
                  out)
    dist.destroy_process_group()


def main():
    if sys.argv[1] == "prepare":
        sizes = [int(v) for v in sys.argv[5:] if v.isdigit()]
        prepare(*sys.argv[2:5], *sizes[:1], duplicate="--duplicate" in sys.argv)
        return
    data, start, out = sys.argv[2:5]
    options = dict(zip(sys.argv[5::2], sys.argv[6::2]))
    args = (data, start, out, int(options["--ranks"]), int(options["--batch"]), int(options["--steps"]),
            int(options["--seed"]), float(options["--lr"]),
            torch.float64 if options.get("--dtype") == "float64" else torch.float32)
    mp.spawn(worker, args=(args,), nprocs=args[3], join=True)


if __name__ == "__main__":
    main()
