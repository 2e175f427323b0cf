#!/usr/bin/env python3
"""Times face detection in one run, alternating, and prints medians and their ratios: `inception faces bench`
against facenet-pytorch 2.6's MTCNN on CPU torch with the same thread count, on a 1920 × 1080 photo with three faces
(insightface's t1.jpg, its left part scaled 3×; make_face_references.py fetches it), then the whole path from the
photo to every face's embedding: `inception faces bench --weights` against facenet-pytorch's `mtcnn(img)` then
`InceptionResnetV1` on the crops (the face model's weights: any, speed does not depend on them).

Each round runs both: `inception faces bench` in its own process (`--runs` timed after two untimed), facenet-pytorch
in this one (`--runs` calls after two untimed). The table gives the median of all timed runs. facenet-pytorch's
`batched_nms` is the stand-in of make_face_references.py (torchvision's compiled operators do not load here); it
runs on a few hundred boxes, a few milliseconds.

Usage: scripts/bench_faces.py --weights FACENET.safetensors [--rounds 3] [--runs 10] [--threads N]
Run from the repository root after `swift build -c release`, with the reference venv's python.
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

import torch
from PIL import Image
from safetensors.torch import load_file

sys.path.insert(0, os.path.dirname(__file__))
import make_face_references  # noqa: E402,F401  (installs the batched_nms stand-in)
from facenet_pytorch import MTCNN, InceptionResnetV1  # noqa: E402


# The wheel's MTCNN weights, which facenet-pytorch loads too.
DETECTOR = os.path.join(os.path.dirname(sys.modules["facenet_pytorch"].__file__), "data")


def ours(binary, photo, runs, threads, weights=None):
    words = [binary, "faces", "bench", photo, "--runs", str(runs), "--warmup", "2", "--threads", str(threads),
             "--detector-weights", DETECTOR, "--json"] + (["--weights", weights] if weights else [])
    return json.loads(subprocess.run(words, capture_output=True, text=True, check=True).stdout)["times_ms"]


def theirs(photo, runs, mtcnn, resnet=None):
    image = Image.open(photo).convert("RGB")
    times = []
    with torch.no_grad():
        for run in range(runs + 2):
            start = time.perf_counter()
            if resnet is None:
                mtcnn.detect(image, landmarks=True)
            else:
                resnet(mtcnn(image))
            if run >= 2:
                times.append((time.perf_counter() - start) * 1000)
    return times


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", required=True, help="face-model weights (safetensors)")
    parser.add_argument("--inception", default=".build/release/inception")
    parser.add_argument("--reference", default=os.environ.get("INCEPTION_REFERENCE_DIR", ".reference"))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    t1 = Image.open(os.path.join(args.reference, "faces", "t1.jpg")).convert("RGB")
    folder = tempfile.mkdtemp(prefix="bench-faces-")
    photo = os.path.join(folder, "three_faces.jpg")
    t1.crop((0, 100, 640, 460)).resize((1920, 1080), Image.BICUBIC).save(photo, quality=92)
    mtcnn, mtcnn_all = MTCNN(keep_all=True), MTCNN(keep_all=True, image_size=160, post_process=True)
    resnet = InceptionResnetV1(classify=True, num_classes=8631).eval()
    resnet.load_state_dict(load_file(args.weights), strict=False)
    resnet.classify = False
    times = {k: [] for k in ("ours_detect", "facenet_detect", "ours_embed", "facenet_embed")}
    for _ in range(args.rounds):
        times["ours_detect"] += ours(args.inception, photo, args.runs, args.threads)
        times["facenet_detect"] += theirs(photo, args.runs, mtcnn)
        times["ours_embed"] += ours(args.inception, photo, args.runs, args.threads, args.weights)
        times["facenet_embed"] += theirs(photo, args.runs, mtcnn_all, resnet)
    m = {k: statistics.median(v) for k, v in times.items()}
    print(f"CPU: {platform.processor() or platform.machine()}, {args.threads} threads; photo 1920×1080, "
          f"{args.rounds} rounds × {args.runs} runs, medians")
    print(f"detection            ours {m['ours_detect']:8.1f} ms   facenet-pytorch {m['facenet_detect']:8.1f} ms   "
          f"ratio {m['ours_detect'] / m['facenet_detect']:.2f}×")
    print(f"photo → embeddings   ours {m['ours_embed']:8.1f} ms   facenet-pytorch {m['facenet_embed']:8.1f} ms   "
          f"ratio {m['ours_embed'] / m['facenet_embed']:.2f}×")


if __name__ == "__main__":
    sys.exit(main())
