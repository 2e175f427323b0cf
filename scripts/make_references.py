#!/usr/bin/env python3
"""Generates reference tensors for the conformance tests from implementations no one here wrote (timm for
inception_v4 and inception_resnet_v2, facenet-pytorch for inception_resnet_v1_facenet).

For each model: build it with timm (pretrained=False), give it random weights with non-trivial BatchNorm
(gamma in [0.2, 0.4], beta in [0.3, 0.6], running statistics calibrated on a batch of real photos so that
activations stay alive through the whole depth), save the state dict as safetensors (num_batches_tracked
included, as timm saves it), and record:
  * x_<size>.npy / logits_<size>.npy (float32) and logits64_<size>.npy (the same network in float64) for real
    photos passed through the model's eval transform at several sizes and batch sizes (for the face model also
    embedding_<size>.npy and embedding64_<size>.npy, the L2-normalised 512-d output);
  * block_<name>_in.npy / block_<name>_out.npy: the input and output of one instance of every block type;
  * for inception_v4 and inception_resnet_v2, one training step (train mode, cross-entropy with label smoothing,
    SGD with momentum and weight decay) from those weights: train_x.npy, train_step.json (labels, loss as float64,
    hyper-parameters), train_gradients.safetensors (every parameter's gradient, timm's keys) and
    train_after.safetensors (the state dict after the step: weights and BatchNorm running statistics), from
    train_weights.safetensors (see training_step for why these differ from weights.safetensors); and the same
    step with TF-slim's auxiliary classifier added at 299×299 (loss = main + 0.4 · auxiliary) from train_weights plus
    train_aux_head.safetensors, files train_aux_*, the head being torchvision's InceptionAux built from timm's
    ConvNormAct (see AUX_STEP);
  * optimizers/rmsprop.safetensors: three steps of timm's RMSpropTF (the paper's RMSProp) on given gradients.
Nothing it writes is committed: CI runs it with a fresh seed on every run.

Usage: make_references.py --out DIR [--seed N] [--models inception_v4 inception_resnet_v2 …]
"""
import argparse
import functools
import json
import os
import random
import subprocess
import sys

import numpy as np
import torch
import timm
from PIL import Image
from safetensors.torch import load_file, save_file
from timm.layers import ConvNormAct
from torchvision.models.inception import InceptionAux

# Our stage names (Sources/Inception/Models.swift) for the reference's module paths, one per block type.
BLOCKS = {
    "inception_v4": {
        "mixed_3a": "features.3", "mixed_4a": "features.4", "mixed_5a": "features.5",
        "inception_a.0": "features.6", "reduction_a": "features.10", "inception_b.0": "features.11",
        "reduction_b": "features.18", "inception_c.2": "features.21",
    },
    "inception_resnet_v2": {
        "mixed_5b": "mixed_5b", "inception_resnet_a.0": "repeat.0", "reduction_a": "mixed_6a",
        "inception_resnet_b.3": "repeat_1.3", "reduction_b": "mixed_7a", "inception_resnet_c.8": "repeat_2.8",
        "inception_resnet_c_last": "block8",
    },
    "inception_resnet_v1_facenet": {
        "inception_resnet_a.0": "repeat_1.0", "reduction_a": "mixed_6a", "inception_resnet_b.9": "repeat_2.9",
        "reduction_b": "mixed_7a", "inception_resnet_c.4": "repeat_3.4", "inception_resnet_c_last": "block8",
    },
}
# (input size, batch) pairs: the default size, a larger one and small odd ones, batches 1 to 3.
CASES = {
    "inception_v4": [(299, 3), (320, 2), (139, 1), (160, 2)],
    "inception_resnet_v2": [(299, 2), (320, 1), (139, 3), (160, 2)],
    "inception_resnet_v1_facenet": [(160, 3), (299, 1), (139, 2), (320, 1)],
}
FACENET_CLASSES = 8631  # VGGFace2, as the released checkpoint
PHOTOS = ["astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "hubble_deep_field.jpg",
          "motorcycle_left.png", "retina.jpg", "motorcycle_right.png"]


def photos():
    import skimage
    folder = os.path.join(os.path.dirname(skimage.__file__), "data")
    return [Image.open(os.path.join(folder, name)).convert("RGB") for name in PHOTOS]


def is_facenet(name):
    return name == "inception_resnet_v1_facenet"


def create(name):
    if is_facenet(name):
        from facenet_pytorch import InceptionResnetV1
        return InceptionResnetV1(classify=True, num_classes=FACENET_CLASSES)
    return timm.create_model(name, pretrained=False)


def batch(name, model, images, size):
    if is_facenet(name):
        # facenet's "fixed image standardization" of a size×size face crop: (x − 127.5) / 128.
        arrays = [np.asarray(image.resize((size, size), Image.BILINEAR), dtype=np.float32) for image in images]
        return torch.from_numpy((np.stack(arrays) - 127.5) / 128).permute(0, 3, 1, 2).contiguous()
    config = timm.data.resolve_data_config({"input_size": (3, size, size)}, model=model)
    transform = timm.data.create_transform(**config)
    return torch.stack([transform(image) for image in images])


def pooled_features(name, model, x):
    if is_facenet(name):
        return None
    return model.forward_head(model.forward_features(x), pre_logits=True)


def randomise_and_calibrate(model, calibration, generator):
    """Random BatchNorm affine parameters, then running statistics set to the statistics of a real batch."""
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            with torch.no_grad():
                m.weight.uniform_(0.2, 0.4, generator=generator)
                m.bias.uniform_(0.3, 0.6, generator=generator)
        elif isinstance(m, torch.nn.BatchNorm1d):
            # The face embedding's BatchNorm: centred, so that the normalised embedding depends on the image.
            with torch.no_grad():
                m.weight.uniform_(0.5, 1.5, generator=generator)
                m.bias.uniform_(-0.1, 0.1, generator=generator)
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.momentum = 1.0  # the next training-mode pass sets running stats to that batch's
    model.train()
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.eval()
    with torch.no_grad():
        model(calibration)
    model.eval()
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.momentum = 0.1
            # Perturb the calibrated statistics so that mean and variance both matter to the result.
            with torch.no_grad():
                m.running_var.mul_(torch.empty_like(m.running_var).uniform_(0.8, 1.25, generator=generator))
                m.running_mean.add_(0.1 * m.running_var.sqrt() * torch.randn(m.running_mean.shape, generator=generator))


def save(path, tensor):
    np.save(path, np.ascontiguousarray(tensor.detach().cpu().numpy().astype(np.float32)))


def make(name, out, seed):
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = create(name)
    images = photos()
    rng = random.Random(seed)
    default_size = CASES[name][0][0]
    calibration = batch(name, model, images, default_size)
    randomise_and_calibrate(model, calibration, generator)
    if not is_facenet(name):
        # Classifier centred on the calibration batch's mean features: with positive BatchNorm shifts the pooled
        # features share a large common part, and a plain random classifier would give every image the same top-5.
        with torch.no_grad():
            features = pooled_features(name, model, calibration)
            head = model.get_classifier()
            head.weight.normal_(0, 1.0, generator=generator)
            head.bias.copy_(-head.weight @ features.mean(0))
            head.bias.add_(torch.empty_like(head.bias).uniform_(-0.1, 0.1, generator=generator))
    folder = os.path.join(out, name)
    os.makedirs(folder, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, os.path.join(folder, "weights.safetensors"))

    model64 = create(name)
    model64.load_state_dict(model.state_dict())
    model64 = model64.double().eval()
    report = {"model": name, "seed": seed, "timm": timm.__version__, "torch": torch.__version__, "cases": []}

    def outputs(m, x):
        """{'logits': …} and, for the face model, {'embedding': …} as facenet-pytorch computes them."""
        with torch.no_grad():
            if not is_facenet(name):
                return {"logits": m(x)}
            m.classify = True
            logits = m(x)
            m.classify = False
            return {"logits": logits, "embedding": m(x)}

    for size, n in CASES[name]:
        chosen = rng.sample(images, n)
        x = batch(name, model, chosen, size)
        ys, ys64 = outputs(model, x), outputs(model64, x.double())
        save(os.path.join(folder, f"x_{size}.npy"), x)
        case = {"size": size, "batch": n}
        grey = outputs(model, torch.zeros_like(x[:1]))
        for kind, y in ys.items():
            y64 = ys64[kind]
            save(os.path.join(folder, f"{kind}_{size}.npy"), y)
            save(os.path.join(folder, f"{kind}64_{size}.npy"), y64)  # the float64 network, rounded to float32
            case[f"{kind}_timm_fp32_vs_fp64"] = ((y.double() - y64).norm(dim=1) / y64.norm(dim=1)).max().item()
            # How much the output depends on the image: distance to the output for a constant grey input.
            case[f"{kind}_min_relative_distance_to_grey_input"] = ((y - grey[kind]).norm(dim=1) / y.norm(dim=1)).min().item()
        case["top5"] = ys["logits"].topk(5).indices.tolist()
        report["cases"].append(case)

    # Block inputs and outputs at a small size, captured with forward hooks.
    modules = dict(model.named_modules())
    captured = {}
    hooks = [modules[path].register_forward_hook(
        lambda m, i, o, ours=ours: captured.__setitem__(ours, (i[0], o))) for ours, path in BLOCKS[name].items()]
    with torch.no_grad():
        model(batch(name, model, rng.sample(images, 2), 139))
    for h in hooks:
        h.remove()
    for ours, (i, o) in captured.items():
        save(os.path.join(folder, f"block_{ours}_in.npy"), i)
        save(os.path.join(folder, f"block_{ours}_out.npy"), o)
    if not is_facenet(name):
        report["training_step"] = training_step(name, model, folder, images, rng, generator)
        report["training_step_auxiliary"] = training_step(name, model, folder, images, rng, generator, auxiliary=True)
    with open(os.path.join(folder, "report.json"), "w") as f:
        json.dump(report, f, indent=1)
    print(json.dumps(report))


TRAIN_STEP = {"size": 139, "batch": 4, "label_smoothing": 0.1, "lr": 0.05, "momentum": 0.9, "weight_decay": 1e-4}
# With TF-slim's auxiliary classifier: it needs the 17×17 map of a 299×299 input. Four images, because its second
# BatchNorm normalises a 1×1 map over the batch alone, and with two images its gradient is exactly zero.
AUX_STEP = dict(TRAIN_STEP, size=299, aux_weight=0.4)
# Where TF-slim attaches the head (Mixed_6h, Repeat_1) and that map's channels.
AUX_STAGE = {"inception_v4": ("features.17", 1024), "inception_resnet_v2": ("repeat_1", 1088)}


def add_auxiliary_head(name, model):
    """Attaches TF-slim's auxiliary classifier as `model.aux_logits` — torchvision's InceptionAux (avg pool 5×5/3,
    1×1 → 128, 5×5 → 768, fully connected, as TF-slim's AuxLogits) with timm's conv-BatchNorm-ReLU blocks (eps 1e-3),
    so its keys are `aux_logits.conv0.conv.weight`, … — and returns the module whose output feeds it."""
    path, channels = AUX_STAGE[name]
    block = functools.partial(ConvNormAct, padding=0, norm_layer="batchnorm2d", act_layer="relu",
                              norm_kwargs=dict(eps=1e-3), act_kwargs=dict(inplace=True))
    model.aux_logits = InceptionAux(channels, model.num_classes, conv_block=block)
    return dict(model.named_modules())[path]


def decay_groups(model, weight_decay):
    """timm's default: weight decay on weights of rank >= 2 only (no decay for biases and BatchNorm)."""
    decay = [p for p in model.parameters() if p.ndim > 1]
    rest = [p for p in model.parameters() if p.ndim <= 1]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]


def training_step(name, model, folder, images, rng, generator, auxiliary=False):
    """One SGD step in train mode, everything the Swift step must reproduce. With `auxiliary`, the model has TF-slim's
    auxiliary classifier (its randomised weights in train_aux_head.safetensors) and the loss is main + 0.4 · aux.

    Train-mode BatchNorm is far less forgiving of float32 rounding than inference: with the eval references'
    gamma in [0.2, 0.4], timm's own float32 gradients differ from its float64 ones by up to 1e-2. So the step starts
    from the reference weights with gamma redrawn in [0.1, 0.2] and the classifier scaled by 0.05 (a softmax that is
    not saturated). Two kinds of decision still flip under float32 rounding and move every gradient below them: a
    ReLU whose input is within rounding of zero (a few per pass at this size), and a max-pool window whose two
    largest inputs are within rounding of each other (hundreds). The float64 pass's decisions are saved — which
    ReLU inputs were positive, which max-pool input won — and the Swift test takes them, so that what it compares
    is the arithmetic. The expected values come from timm in float64;
    timm's own float32 error against them is recorded per tensor: some gradients are zero in exact arithmetic (the
    bias of a layer whose every ReLU is active, followed only by linear maps into a BatchNorm), and there a float32
    result is rounding noise."""
    s = AUX_STEP if auxiliary else TRAIN_STEP
    prefix = "train_aux_" if auxiliary else "train_"
    start = create(name)
    if auxiliary:
        # The network starts from the plain step's weights (train_weights.safetensors, not written twice); the head is
        # new, with BatchNorm as the network's: γ in [0.1, 0.2], β in [0.3, 0.6], random running statistics.
        start.load_state_dict(load_file(os.path.join(folder, "train_weights.safetensors")))
        add_auxiliary_head(name, start)
        with torch.no_grad():
            for m in start.aux_logits.modules():
                if isinstance(m, torch.nn.BatchNorm2d):
                    m.weight.uniform_(0.1, 0.2, generator=generator)
                    m.bias.uniform_(0.3, 0.6, generator=generator)
                    m.running_mean.uniform_(-0.1, 0.1, generator=generator)
                    m.running_var.uniform_(0.5, 1.5, generator=generator)
        # As a run folder keeps them: the head beside the checkpoint timm loads.
        save_file({k: v.contiguous() for k, v in start.state_dict().items()
                   if k.startswith("aux_logits.") and "num_batches" not in k}, os.path.join(folder, prefix + "head.safetensors"))
    else:
        start.load_state_dict(model.state_dict())
        with torch.no_grad():
            for m in start.modules():
                if isinstance(m, torch.nn.BatchNorm2d):
                    m.weight.uniform_(0.1, 0.2, generator=generator)
            start.get_classifier().weight.mul_(0.05)
            start.get_classifier().bias.mul_(0.05)
        save_file({k: v.contiguous() for k, v in start.state_dict().items()}, os.path.join(folder, "train_weights.safetensors"))
    state = start.state_dict()
    x = batch(name, start, rng.sample(images, s["batch"]), s["size"])
    labels = [rng.randrange(start.num_classes) for _ in range(s["batch"])]
    results = {}
    routing, relus = [], []
    for dtype in (torch.float32, torch.float64):
        trained = create(name)
        stage = add_auxiliary_head(name, trained) if auxiliary else None
        trained.load_state_dict(state)
        trained = trained.to(dtype).train()
        hooks = []
        if dtype == torch.float64:
            routing.clear()
            hooks += [m.register_forward_hook(lambda m, i, o: routing.append(torch.nn.functional.max_pool2d(
                i[0].detach(), m.kernel_size, m.stride, return_indices=True)[1]))
                for m in trained.modules() if isinstance(m, torch.nn.MaxPool2d)]
            # Pre-hooks: the ReLUs are in place, so only before the call is the input still there.
            hooks += [m.register_forward_pre_hook(lambda m, i, path=path: relus.append((path, i[0].detach() > 0)))
                      for path, m in trained.named_modules() if isinstance(m, torch.nn.ReLU)]
        optimizer = torch.optim.SGD(decay_groups(trained, s["weight_decay"]), lr=s["lr"], momentum=s["momentum"])
        captured = []
        if auxiliary:
            hooks.append(stage.register_forward_hook(lambda m, i, o: captured.append(o)))
        target = torch.tensor(labels)
        losses = [torch.nn.functional.cross_entropy(trained(x.to(dtype)), target, label_smoothing=s["label_smoothing"])]
        if auxiliary:
            losses.append(torch.nn.functional.cross_entropy(trained.aux_logits(captured[0]), target,
                                                            label_smoothing=s["label_smoothing"]))
        loss = losses[0] + s["aux_weight"] * losses[1] if auxiliary else losses[0]
        optimizer.zero_grad()
        loss.backward()
        gradients = {k: p.grad.detach().clone() for k, p in trained.named_parameters()}
        for h in hooks:
            h.remove()
        optimizer.step()
        results[dtype] = (loss.item(), gradients, trained.state_dict(), [l.item() for l in losses])
    loss64, gradients64, after64, losses64 = results[torch.float64]
    loss32, gradients32, _, _ = results[torch.float32]
    save(os.path.join(folder, prefix + "x.npy"), x)
    # Which input of each max-pool window won, in forward order (the order of the max-pool nodes in our graphs): near-ties (within float32 rounding) are common
    # — hundreds of windows within 1e-6 of each other at this size — and a window decided the other way moves
    # its gradient to a neighbouring pixel, which changes every gradient below it by up to 5e-3 (timm's own
    # float32 included). The Swift test takes these choices, so that what it compares is the arithmetic.
    save_file({f"maxpool{k}": r.to(torch.float32).contiguous() for k, r in enumerate(routing)},  # exact below 2**24
              os.path.join(folder, prefix + "maxpool_routing.safetensors"))
    save_file({path: r.to(torch.float16).contiguous() for path, r in relus},  # by module path, e.g. repeat.0.act; 0 or 1
              os.path.join(folder, prefix + "relu_masks.safetensors"))
    save_file({k: g.float().contiguous() for k, g in gradients64.items()}, os.path.join(folder, prefix + "gradients.safetensors"))
    save_file({k: (v.float() if v.is_floating_point() else v).contiguous() for k, v in after64.items()},
              os.path.join(folder, prefix + "after.safetensors"))
    timm32 = {k: ((gradients32[k].double() - g).norm() / g.norm().clamp(min=1e-300)).item() for k, g in gradients64.items()}
    step = dict(s, labels=labels, loss=loss64, losses=losses64, timm_fp32_loss=loss32, timm_fp32_gradient_errors=timm32)
    with open(os.path.join(folder, prefix + "step.json"), "w") as f:
        json.dump(step, f)
    worst = sorted(timm32.values())
    return dict(s, labels=labels, loss=loss64, timm_fp32_gradient_error_median=worst[len(worst) // 2],
                timm_fp32_gradient_error_max=worst[-1])


def make_optimizer_references(out, seed):
    """Three steps of timm's RMSpropTF configured as the paper (decay 0.9, momentum 0.9, eps 1.0) with weight decay,
    on parameters of the shapes a network has (a convolution weight, a BatchNorm weight, a bias), with a learning
    rate that changes between steps."""
    from timm.optim import RMSpropTF
    generator = torch.Generator().manual_seed(seed)
    shapes = {"conv.weight": (32, 16, 3, 3), "bn.weight": (32,), "fc.bias": (10,)}
    params = {k: torch.nn.Parameter(torch.randn(shape, generator=generator) * 0.1) for k, shape in shapes.items()}
    tensors = {f"{k}.initial": p.detach().clone() for k, p in params.items()}
    groups = [{"params": [params["conv.weight"]], "weight_decay": 4e-5},
              {"params": [params["bn.weight"], params["fc.bias"]], "weight_decay": 0.0}]
    optimizer = RMSpropTF(groups, lr=0.045, alpha=0.9, eps=1.0, momentum=0.9)
    rates = [0.045, 0.045, 0.045 * 0.94]
    for step, lr in enumerate(rates):
        for group in optimizer.param_groups:
            group["lr"] = lr
        for k, p in params.items():
            p.grad = torch.randn(p.shape, generator=generator) * (0.5 + step)
            tensors[f"{k}.grad{step}"] = p.grad.clone()
        optimizer.step()
    for k, p in params.items():
        tensors[f"{k}.final"] = p.detach().clone()
    tensors["learning_rates"] = torch.tensor(rates)
    folder = os.path.join(out, "optimizers")
    os.makedirs(folder, exist_ok=True)
    save_file(tensors, os.path.join(folder, "rmsprop.safetensors"))


def write_png16(path, array):
    """A 16-bit PNG (grey or RGB) written by hand: Pillow cannot write 16-bit RGB."""
    import struct
    import zlib
    height, width = array.shape[:2]
    channels = 1 if array.ndim == 2 else array.shape[2]
    raw = b"".join(b"\x00" + array[y].astype(">u2").tobytes() for y in range(height))
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    header = struct.pack(">IIBBBBB", width, height, 16, 0 if channels == 1 else 2, 0, 0, 0)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def make_images(out):
    """Real photos in every format the decoder must handle, with Pillow's decoding (convert("RGB")) and timm's
    eval-transform tensor for each released ImageNet model."""
    folder = os.path.join(out, "images")
    os.makedirs(folder, exist_ok=True)
    import skimage
    data = os.path.join(os.path.dirname(skimage.__file__), "data")
    chelsea = Image.open(os.path.join(data, "chelsea.png")).convert("RGB")
    coffee = Image.open(os.path.join(data, "coffee.png")).convert("RGB")
    astronaut = Image.open(os.path.join(data, "astronaut.png")).convert("RGB")
    motorcycle = Image.open(os.path.join(data, "motorcycle_left.png")).convert("RGB")
    files = {}
    import shutil
    shutil.copy(os.path.join(data, "rocket.jpg"), os.path.join(folder, "rocket.jpg"))  # a camera JPEG
    files["rocket.jpg"] = None
    chelsea.save(os.path.join(folder, "chelsea_baseline.jpg"), quality=92)
    coffee.save(os.path.join(folder, "coffee_progressive.jpg"), quality=90, progressive=True)
    astronaut.convert("L").save(os.path.join(folder, "astronaut_gray.jpg"), quality=90)
    motorcycle.convert("CMYK").save(os.path.join(folder, "motorcycle_cmyk.jpg"), quality=95)
    chelsea.save(os.path.join(folder, "chelsea_rgb.png"))
    coffee.convert("L").save(os.path.join(folder, "coffee_gray.png"))
    la = astronaut.convert("LA")
    la.putalpha(Image.linear_gradient("L").resize(astronaut.size))
    la.save(os.path.join(folder, "astronaut_gray_alpha.png"))
    rgba = motorcycle.copy()
    rgba.putalpha(Image.linear_gradient("L").resize(motorcycle.size))
    rgba.save(os.path.join(folder, "motorcycle_rgba.png"))
    chelsea.quantize(colors=200).save(os.path.join(folder, "chelsea_palette.png"))
    # Extreme aspect ratios (a photo squeezed to one or two pixels across): the resize to the short side makes a
    # very long image, of which the crop keeps a square.
    chelsea.resize((1, 600), Image.BICUBIC).save(os.path.join(folder, "chelsea_thin_tall.png"))
    chelsea.resize((800, 2), Image.BICUBIC).save(os.path.join(folder, "chelsea_thin_wide.png"))
    coffee16 = (np.asarray(coffee, dtype=np.uint16) * 257 + np.random.default_rng(0).integers(0, 257, size=np.asarray(coffee).shape)).astype(np.uint16)
    write_png16(os.path.join(folder, "coffee_rgb16.png"), coffee16)
    gray16 = coffee16[..., 1]
    write_png16(os.path.join(folder, "coffee_gray16.png"), gray16)
    for name in sorted(os.listdir(folder)):
        if not name.endswith((".jpg", ".png")):
            continue
        stem = os.path.splitext(name)[0]
        image = Image.open(os.path.join(folder, name))
        rgb = np.asarray(image.convert("RGB"))
        if name == "coffee_gray16.png":
            # Pillow clips 16-bit grey to 255 (nearly every pixel white); we keep the high byte, as Pillow itself
            # does for 16-bit RGB. The expectation is that choice.
            rgb = np.repeat((gray16 >> 8).astype(np.uint8)[..., None], 3, axis=2)
        np.save(os.path.join(folder, f"{stem}_rgb.npy"), rgb.astype(np.float32))
        for model_name in ("inception_v4", "inception_resnet_v2"):
            model = timm.create_model(model_name, pretrained=False)
            config = timm.data.resolve_data_config({}, model=model)
            x = timm.data.create_transform(**config)(Image.fromarray(rgb))
            np.save(os.path.join(folder, f"{stem}_{model_name}.npy"), x.unsqueeze(0).numpy().astype(np.float32))
        # The face model as facenet-pytorch's users feed it a face crop: short side to 160 (Pillow's bicubic, through
        # torchvision), the centre 160×160, then facenet-pytorch's own fixed_image_standardization.
        from facenet_pytorch import fixed_image_standardization
        from torchvision import transforms
        crop = transforms.Compose([transforms.Resize(160, interpolation=transforms.InterpolationMode.BICUBIC),
                                   transforms.CenterCrop(160)])(Image.fromarray(rgb))
        x = fixed_image_standardization(torch.from_numpy(np.asarray(crop, dtype=np.float32)).permute(2, 0, 1))
        np.save(os.path.join(folder, f"{stem}_inception_resnet_v1_facenet.npy"), x.unsqueeze(0).numpy())
    print(json.dumps({"images": sorted(f for f in os.listdir(folder) if f.endswith((".jpg", ".png")))}))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True)
    parser.add_argument("--seed", type=int, default=None, help="default: a fresh random seed")
    parser.add_argument("--models", nargs="+", default=list(CASES))
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**31)
    torch.set_num_threads(os.cpu_count() or 1)
    for name in args.models:
        make(name, args.out, seed)
    make_optimizer_references(args.out, seed)
    make_images(args.out)
    # pytorch-grad-cam's maps on the weights just written (the explanation tests).
    subprocess.run([sys.executable, os.path.join(os.path.dirname(__file__), "make_cam_references.py"), args.out],
                   check=True)
    # facenet-pytorch's MTCNN on real photos (the face detection tests).
    subprocess.run([sys.executable, os.path.join(os.path.dirname(__file__), "make_face_references.py"), args.out],
                   check=True)
    subprocess.run([sys.executable, os.path.join(os.path.dirname(__file__), "make_attacks.py"),
                    os.path.join(args.out, "attacks")], check=True)


if __name__ == "__main__":
    sys.exit(main())
