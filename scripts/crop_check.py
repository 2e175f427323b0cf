#!/usr/bin/env python3
"""Checks `inception preprocess --crops` and `inception eval --crops` against an implementation written here with
Pillow and numpy from the protocols' definitions (docs/evaluation.md), not from the Swift code:

1. geometry: for portrait, landscape, square, small and thin (700 × 3) images made from one photo, every view of the 10-, 12- and
   144-crop protocols (and the single centre crop), normalised, equals `inception preprocess --crops N` bitwise —
   for Inception-v4 (its preprocessing read from timm's data config) and the face model (facenet-pytorch's fixed
   standardisation at 160);
2. scores: `inception eval --crops N --json` on a folder of those images equals, image by image, the top five of the
   softmax probabilities averaged over the views (or of the averaged logits with --average logits), computed here
   with numpy from `inception predict`'s logits on the exported views (Inception-v4, 10 and 12 crops); an
   ensemble of Inception-v4 and Inception-ResNet-v2 equals the mean of their averaged probabilities (in `eval` and
   in `classify`); and the top-1 and top-5 errors equal numpy's on labels that mix hits and misses.

    python scripts/crop_check.py --inception BIN --photo PHOTO --weights-v4 W --weights-ir2 W

Prints one line per check; exits 1 at the first failure, naming it.
"""
import argparse
import json
import os
import tempfile

import numpy as np
from PIL import Image

from check_support import check, run_inception

SHAPES = {"portrait": (300, 500), "landscape": (640, 360), "square": (400, 400), "small": (120, 90),
          "thin": (700, 3)}


def inception(args, *arguments):
    compute = arguments[0] in ("eval", "predict", "classify", "embed", "verify", "compare")
    return run_inception(args.inception, *arguments, one_thread=compute)


def preset(model):
    """(input size, resize size, mean, std) of a network's evaluation transform."""
    if model == "inception_resnet_v1_facenet":  # facenet-pytorch's fixed_image_standardization at 160
        return 160, 160, np.float32(127.5) / np.float32(255), np.float32(128) / np.float32(255)
    import timm
    import timm.data
    config = timm.data.resolve_data_config({}, model=timm.create_model(model, pretrained=False))
    size = config["input_size"][1]
    assert config["interpolation"] == "bicubic"
    return (size, int(size / config["crop_pct"]), np.array(config["mean"], np.float32),
            np.array(config["std"], np.float32))


def resize_short(image, short):
    """torchvision's Resize(short): the short side to `short`, the long side scaled and truncated."""
    w, h = image.size
    size = (short, int(short * h / w)) if w <= h else (int(short * w / h), short)
    return image if size == image.size else image.resize(size, Image.BICUBIC)


def five(image, s):
    """torchvision's FiveCrop: top-left, top-right, bottom-left, bottom-right, centre (round half to even)."""
    w, h = image.size
    corners = [(0, 0), (w - s, 0), (0, h - s), (w - s, h - s), (int(round((w - s) / 2)), int(round((h - s) / 2)))]
    return [image.crop((x, y, x + s, y + s)) for x, y in corners]


def square(image, offset):
    w, h = image.size
    side = min(w, h)
    return image.crop((offset, 0, offset + side, side) if w >= h else (0, offset, side, offset + side))


def scaled(image, s):
    return image if image.size == (s, s) else image.resize((s, s), Image.BICUBIC)


def views(image, crops, s, r):
    """The protocol's views, unmirrored then mirrored, as HWC uint8 arrays."""
    if crops == 1:
        return [np.asarray(five(resize_short(image, r), s)[4])]
    plain = []
    if crops in (10, 12):
        resized = resize_short(image, r)
        plain = five(resized, s)
        if crops == 12:
            plain.append(scaled(square(resized, int(round(abs(resized.size[0] - resized.size[1]) / 2))), s))
    else:
        for scale in (256, 288, 320, 352):
            short = int(round(scale * s / 224))
            resized = resize_short(image, short)
            slack = max(resized.size) - short
            for offset in (0, int(round(slack / 2)), slack):
                sq = square(resized, offset)
                plain += five(sq, s) + [scaled(sq, s)]
    arrays = [np.asarray(v) for v in plain]
    return arrays + [a[:, ::-1] for a in arrays]


def normalised(view, mean, std):
    return ((view.astype(np.float32) / np.float32(255) - mean) / std).transpose(2, 0, 1)


def geometry(args, images, scratch):
    for model in ("inception_v4", "inception_resnet_v1_facenet"):
        s, r, mean, std = preset(model)
        for crops in (1, 10, 12, 144):
            out = os.path.join(scratch, "x.npy")
            inception(args, "preprocess", "--model", model, "--crops", str(crops), "--output", out, *images.values())
            ours = np.load(out)
            theirs = np.stack([normalised(v, mean, std) for path in images.values()
                               for v in views(Image.open(path).convert("RGB"), crops, s, r)])
            check(ours.shape == theirs.shape and np.array_equal(ours, theirs),
                  f"{model}, {crops} crop(s), {', '.join(images)}: {ours.shape[0]} views equal to Pillow's")


def averaged(args, model, weights, paths, crops, average, scratch):
    """Per image, the class probabilities from predict's logits on the exported views."""
    x, y = os.path.join(scratch, "views.npy"), os.path.join(scratch, "logits.npy")
    inception(args, "preprocess", "--model", model, "--crops", str(crops), "--output", x, *paths)
    inception(args, "predict", "--model", model, "--weights", weights, "--input", x, "--output", y,
              "--result", "logits")
    logits = np.load(y).astype(np.float64).reshape(len(paths), crops, -1)

    def softmax(z):
        e = np.exp(z - z.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)
    return softmax(logits).mean(axis=1) if average == "probabilities" else softmax(logits.mean(axis=1))


def scores(args, images, scratch):
    """eval against numpy on three of the images, labelled so that the scores mix hits and misses: the first by
    its most probable class under Inception-v4's 10 crops, the second by its third, the last by its least."""
    paths = [images[name] for name in ("portrait", "landscape", "small")]
    v4 = ("inception_v4", args.weights_v4)
    computed = {}  # (model, crops, average): the same three images, before and after they are filed by label

    def expected_of(model, weights, crops, average):
        if (model, crops, average) not in computed:
            computed[model, crops, average] = averaged(args, model, weights, paths, crops, average, scratch)
        return computed[model, crops, average]
    base = expected_of(*v4, 10, "probabilities")
    labels = [int(np.argmax(base[0])), int(np.argsort(-base[1])[2]), int(np.argmin(base[2]))]
    folder = os.path.join(scratch, "folder")
    for n, (label, path) in enumerate(zip(labels, paths)):  # class folders by index, as an ImageNet folder
        os.makedirs(os.path.join(folder, str(label)), exist_ok=True)
        os.link(path, os.path.join(folder, str(label), f"{n}.png"))
    paths = [os.path.join(folder, str(label), f"{n}.png") for n, label in enumerate(labels)]
    cases = [([v4], 10, "probabilities"), ([v4], 12, "logits"),
             ([v4, ("inception_resnet_v2", args.weights_ir2)], 10, "probabilities")]
    for members, crops, average in cases:
        flags = [f for model, weights in members for f in ("--model", model, "--weights", weights)]
        report = json.loads(inception(args, "eval", *flags, "--crops", str(crops), "--average", average, "--json",
                                      folder))
        expected = np.mean([expected_of(m, w, crops, average) for m, w in members], axis=0)
        name = " + ".join(m for m, _ in members)
        by_path = {image["image"]: image for image in report["per_image"]}
        for row, path, label in zip(expected, paths, labels):
            image = by_path[path]
            top5 = [int(k) for k in np.argsort(-row, kind="stable")[:5]]
            got = [p["index"] for p in image["top5"]]
            close = np.allclose([p["probability"] for p in image["top5"]], row[top5], rtol=1e-5, atol=1e-9)
            check(got == top5 and close and image["label"] == label,
                  f"{name}, {crops} crops, {average} averaged, image {os.path.basename(path)}: the top five of "
                  f"numpy's average over predict's logits")
        if len(members) > 1:  # classify scores an ensemble as eval does
            listed = json.loads(inception(args, "classify", *flags, "--crops", str(crops), "--average", average,
                                          "--json", *paths))
            check([[p["index"] for p in image["predictions"]] for image in listed]
                  == [[int(k) for k in np.argsort(-row, kind="stable")[:5]] for row in expected],
                  f"classify {name}, {crops} crops: each image's top five as numpy's")
        top1 = np.mean([np.argmax(r) == l for r, l in zip(expected, labels)])
        top5 = np.mean([l in np.argsort(-r)[:5] for r, l in zip(expected, labels)])
        check(len(report["per_image"]) == 3 and abs(report["top1_error"] - (1 - top1)) < 1e-12
              and abs(report["top5_error"] - (1 - top5)) < 1e-12,
              f"{name}, {crops} crops: top-1 error {report['top1_error']:.3f}, top-5 {report['top5_error']:.3f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for flag in ("--inception", "--photo", "--weights-v4", "--weights-ir2"):
        parser.add_argument(flag, required=True)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        photo = Image.open(args.photo).convert("RGB")
        images = {}
        for name, size in SHAPES.items():
            images[name] = os.path.join(scratch, f"{name}.png")
            photo.resize(size, Image.BICUBIC).save(images[name])
        geometry(args, images, scratch)
        scores(args, images, scratch)
    print("crop_check: every check passed")


if __name__ == "__main__":
    main()
