#!/usr/bin/env python3
"""Face detection references from facenet-pytorch 2.6's MTCNN (its released P-, R- and O-Net weights, the wheel's
facenet_pytorch/data), on real photos: insightface's group photo t1.jpg and its Tom_Hanks_54745.png (taken from the
insightface sdist on PyPI; nothing is committed), skimage's astronaut and a photo without a face (coffee), and
photos made from them: t1 at 4000 px wide, t1 cut so that faces touch the borders, a small t1 (400 px), and a grid
of twenty faces.

torchvision's compiled operators do not load beside the CPU torch wheel here, so facenet-pytorch's `batched_nms`
is replaced by a stand-in with torchvision's semantics: a stable sort by descending score, areas
(x2 − x1)(y2 − y1) in float32, suppress where IoU > threshold, boxes of other images offset apart.

Writes REFERENCE_DIR/faces/: the photos, and for each photo STEM_detect.json (boxes, probabilities and landmarks
of MTCNN.detect(img, landmarks=True)) and STEM_crops_MARGIN.npy (the aligned crops of
MTCNN(image_size=160, margin=MARGIN, keep_all=True, post_process=True)(img), n × 160 × 160 × 3, float32).

Usage: make_face_references.py REFERENCE_DIR
"""
import glob
import json
import os
import subprocess
import sys
import tarfile
import tempfile

import numpy as np
import torch
from PIL import Image

import facenet_pytorch.models.utils.detect_face as detect_face

MARGINS = {"t1": [0, 20], "hanks": [0], "astronaut": [0, 32], "t1_large": [0], "t1_border": [0, 20],
           "t1_small": [0], "grid20": [0], "coffee": [0]}


def nms(boxes, scores, threshold):
    """torchvision.ops.nms's CPU kernel, in float32 as it computes."""
    order = torch.sort(scores, stable=True, descending=True)[1]
    x1, y1, x2, y2 = boxes.unbind(1)
    areas = (x2 - x1) * (y2 - y1)
    suppressed = torch.zeros(len(boxes), dtype=torch.bool)
    keep = []
    for k in range(len(order)):
        i = order[k].item()
        if suppressed[i]:
            continue
        keep.append(i)
        rest = order[k + 1:]
        w = torch.clamp(torch.minimum(x2[i], x2[rest]) - torch.maximum(x1[i], x1[rest]), min=0)
        h = torch.clamp(torch.minimum(y2[i], y2[rest]) - torch.maximum(y1[i], y1[rest]), min=0)
        inter = w * h
        suppressed[rest[inter / (areas[i] + areas[rest] - inter) > threshold]] = True
    return torch.tensor(keep, dtype=torch.long)


def batched_nms(boxes, scores, idxs, threshold):
    if boxes.numel() == 0:
        return torch.empty((0,), dtype=torch.int64)
    offsets = idxs.to(boxes) * (boxes.max() + 1)
    return nms(boxes + offsets[:, None], scores, threshold)


detect_face.batched_nms = batched_nms
from facenet_pytorch import MTCNN  # noqa: E402


def insightface_photos(folder):
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:",
                        "--disable-pip-version-check", "-d", tmp, "insightface==2.1"], check=True)
        with tarfile.open(glob.glob(os.path.join(tmp, "insightface-*.tar.gz"))[0]) as archive:
            for member in archive.getmembers():
                name = os.path.basename(member.name)
                if name in ("t1.jpg", "Tom_Hanks_54745.png") and "/data/images/" in member.name:
                    with archive.extractfile(member) as source:
                        data = source.read()
                    with open(os.path.join(folder, "hanks.png" if name.endswith(".png") else name), "wb") as f:
                        f.write(data)


def derived_photos(folder):
    import skimage
    data = os.path.join(os.path.dirname(skimage.__file__), "data")
    Image.open(os.path.join(data, "astronaut.png")).convert("RGB").save(os.path.join(folder, "astronaut.jpg"),
                                                                        quality=92)
    Image.open(os.path.join(data, "coffee.png")).convert("RGB").save(os.path.join(folder, "coffee.jpg"), quality=92)
    t1 = Image.open(os.path.join(folder, "t1.jpg")).convert("RGB")
    t1.resize((4000, round(4000 * t1.height / t1.width)), Image.BICUBIC).save(
        os.path.join(folder, "t1_large.jpg"), quality=90)
    t1.resize((400, round(400 * t1.height / t1.width)), Image.BICUBIC).save(os.path.join(folder, "t1_small.png"))
    # Faces cut by the left and top edges (the boxes reach past the photo).
    t1.crop((500, 100, 1280, 886)).save(os.path.join(folder, "t1_border.png"))
    # Twenty faces: t1's six clearest faces and the astronaut's, 120 px each, in a 5 × 4 grid.
    faces = [(465, 245, 575, 415), (50, 250, 170, 405), (905, 45, 1015, 210), (265, 135, 380, 285),
             (740, 335, 850, 485), (1130, 265, 1235, 405)]
    tiles = [t1.crop(box) for box in faces]
    tiles.append(Image.open(os.path.join(data, "astronaut.png")).convert("RGB").crop((140, 20, 300, 200)))
    grid = Image.new("RGB", (5 * 160, 4 * 170), (235, 235, 230))
    for k in range(20):
        tile = tiles[k % len(tiles)]
        tile = tile.resize((120, round(120 * tile.height / tile.width)), Image.BICUBIC)
        grid.paste(tile, ((k % 5) * 160 + 20, (k // 5) * 170 + 10))
    grid.save(os.path.join(folder, "grid20.png"))


def main():
    folder = os.path.join(sys.argv[1], "faces")
    os.makedirs(folder, exist_ok=True)
    torch.set_num_threads(os.cpu_count() or 1)
    insightface_photos(folder)
    derived_photos(folder)
    detector = MTCNN(keep_all=True)
    report = {}
    for stem, margins in MARGINS.items():
        path = glob.glob(os.path.join(folder, stem + ".*"))[0]
        image = Image.open(path).convert("RGB")
        boxes, probs, points = detector.detect(image, landmarks=True)
        found = boxes is not None
        result = {"photo": os.path.basename(path),
                  "boxes": boxes.tolist() if found else [],
                  "probabilities": [float(p) for p in probs] if found else [],
                  "landmarks": points.tolist() if found else []}
        with open(os.path.join(folder, f"{stem}_detect.json"), "w") as f:
            json.dump(result, f)
        for margin in margins:
            crops = MTCNN(image_size=160, margin=margin, keep_all=True, post_process=True)(image)
            array = np.zeros((0, 160, 160, 3), np.float32) if crops is None else crops.permute(0, 2, 3, 1).numpy()
            np.save(os.path.join(folder, f"{stem}_crops_{margin}.npy"), np.ascontiguousarray(array))
        report[stem] = len(result["boxes"])
    print(json.dumps({"faces": report}))


if __name__ == "__main__":
    sys.exit(main())
