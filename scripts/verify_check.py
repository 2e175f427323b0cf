#!/usr/bin/env python3
"""Checks `inception verify` and `inception compare` against computations written here: on "identities" made of
augmented crops of real photos (each half of each photo one person, several crops each, LFW's folder layout) and a generated
10-fold pairs file, every pair's distance equals numpy's squared distance of `inception embed`'s L2-normalised
embeddings; the 10-fold accuracy (threshold chosen on the other nine folds), VAL at FAR = 1e-3 and each fold's
threshold equal a numpy re-implementation of facenet's protocol on the same distances; the ROC and its AUC equal
scikit-learn's `roc_curve` and `auc`; the simple pairs format (no header) gives the same figures; the ROC SVG
parses; `compare` gives numpy's distance and decision.

    python scripts/verify_check.py --inception BIN --weights FACENET.safetensors PHOTO...

Prints one line per check; exits 1 at the first failure, naming it.
"""
import argparse
import json
import os
import random
import tempfile
import xml.etree.ElementTree as ElementTree

import numpy as np
from PIL import Image, ImageOps
from sklearn.metrics import auc, roc_curve

from check_support import check, run_inception

CROPS = 4  # images per identity


def inception(args, *arguments):
    compute = arguments[0] in ("eval", "predict", "classify", "embed", "verify", "compare")
    return run_inception(args.inception, *arguments, one_thread=compute)


def identities(photos, folder, rng):
    """Each half (left, right) of each photo a person — the two halves of a photo look alike, so that the pairs'
    distances overlap: CROPS random crops (40–90% of each side), some mirrored, at 200×200."""
    people = []
    for p, half in [(p, half) for p in range(len(photos)) for half in (0, 1)]:
        name = f"person_{p}_{half}"
        os.makedirs(os.path.join(folder, name))
        whole = Image.open(photos[p]).convert("RGB")
        photo = whole.crop((half * whole.size[0] // 2, 0, (half + 1) * whole.size[0] // 2, whole.size[1]))
        w, h = photo.size
        for n in range(1, CROPS + 1):
            cw, ch = int(w * rng.uniform(0.4, 0.9)), int(h * rng.uniform(0.4, 0.9))
            x, y = rng.randrange(0, w - cw + 1), rng.randrange(0, h - ch + 1)
            crop = photo.crop((x, y, x + cw, y + ch)).resize((200, 200), Image.BICUBIC)
            (ImageOps.mirror(crop) if rng.random() < 0.5 else crop).save(os.path.join(folder, name,
                                                                                      f"{name}_{n:04d}.png"))
        people.append(name)
    return people


def pairs_file(people, rng, folds=10, per_fold=3):
    """LFW's 10-fold layout: a "folds per_fold" line, then per fold per_fold same and per_fold different pairs."""
    lines, pairs = [f"{folds} {per_fold}"], []
    for _ in range(folds):
        for _ in range(per_fold):
            name = rng.choice(people)
            a, b = rng.sample(range(1, CROPS + 1), 2)
            lines.append(f"{name}\t{a}\t{b}")
            pairs.append((f"{name}/{name}_{a:04d}.png", f"{name}/{name}_{b:04d}.png", True))
        for _ in range(per_fold):
            one, other = rng.sample(people, 2)
            a, b = rng.randrange(1, CROPS + 1), rng.randrange(1, CROPS + 1)
            lines.append(f"{one}\t{a}\t{other}\t{b}")
            pairs.append((f"{one}/{one}_{a:04d}.png", f"{other}/{other}_{b:04d}.png", False))
    return "\n".join(lines) + "\n", pairs


def protocol(distances, same, folds=10, far_target=1e-3):
    """facenet's evaluate on squared distances, in numpy: contiguous folds (KFold without shuffling), the best
    training accuracy's threshold on 0, 0.01, …, 3.99, VAL at the threshold whose training FAR is the target
    (interpolated between the largest threshold at or below it and the smallest above, on 0, 0.001, …, 3.999)."""
    n = len(distances)
    sizes = [n // folds + (1 if i < n % folds else 0) for i in range(folds)]
    starts = np.cumsum([0] + sizes)
    grid, fine = np.arange(400) / 100, np.arange(4000) / 1000

    def rates(t, idx):
        accepted = distances[idx] < t
        s = same[idx]
        val = (accepted & s).sum() / max(1, s.sum()) if s.any() else 0.0
        far = (accepted & ~s).sum() / max(1, (~s).sum()) if (~s).any() else 0.0
        return ((accepted == s).sum() / len(idx)), val, far
    out = {"accuracy": [], "threshold": [], "val": [], "far": []}
    for k in range(folds):
        test = np.arange(starts[k], starts[k + 1])
        train = np.setdiff1d(np.arange(n), test)
        accuracy = np.array([rates(t, train)[0] for t in grid])
        best = grid[int(np.argmax(accuracy))]
        out["threshold"].append(best)
        out["accuracy"].append(rates(best, test)[0])
        far = np.array([rates(t, train)[2] for t in fine])
        if far.max() < far_target:
            threshold = 0.0
        else:
            below, above = np.where(far <= far_target)[0], np.where(far > far_target)[0]
            if len(below) == 0:
                threshold = fine[above[np.argmin(far[above])]]  # the smallest threshold of the smallest FAR
            else:
                lo = below[far[below] == far[below].max()].max()
                if len(above) == 0 or far[lo] == far_target:
                    threshold = fine[lo]
                else:
                    hi = above[far[above] == far[above].min()].min()
                    threshold = fine[lo] + (far_target - far[lo]) * (fine[hi] - fine[lo]) / (far[hi] - far[lo])
        _, val, far_test = rates(threshold, test)
        out["val"].append(val)
        out["far"].append(far_test)
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--inception", required=True)
    parser.add_argument("--weights", required=True)
    parser.add_argument("photos", nargs="+")
    args = parser.parse_args()
    rng = random.Random(7)
    with tempfile.TemporaryDirectory() as scratch:
        folder = os.path.join(scratch, "faces")
        people = identities(args.photos, folder, rng)
        text, pairs = pairs_file(people, rng)
        with open(os.path.join(scratch, "pairs.txt"), "w") as f:
            f.write(text)
        with open(os.path.join(scratch, "simple.txt"), "w") as f:
            f.write("\n".join(text.splitlines()[1:]) + "\n")
        # The distances' arithmetic on whole photos: no face detection (its own tests are FaceDetectionTests).
        model = ["--model", "inception_resnet_v1_facenet", "--weights", args.weights, "--no-detect"]
        svg = os.path.join(scratch, "roc.svg")
        report = json.loads(inception(args, "verify", *model, "--pairs", os.path.join(scratch, "pairs.txt"),
                                      "--images", folder, "--roc", svg, "--json"))
        files = sorted({p for a, b, _ in pairs for p in (a, b)})
        embeddings_path = os.path.join(scratch, "e.npy")
        inception(args, "embed", *model, "--output", embeddings_path, *[os.path.join(folder, f) for f in files])
        e = np.load(embeddings_path).astype(np.float64)
        e /= np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
        row = {f: i for i, f in enumerate(files)}
        distances = np.array([((e[row[a]] - e[row[b]]) ** 2).sum() for a, b, _ in pairs])
        same = np.array([s for _, _, s in pairs])
        got = np.array([p["distance"] for p in report["per_pair"]])
        check(len(got) == 60 and np.allclose(got, distances, rtol=1e-9, atol=1e-12)
              and [p["same"] for p in report["per_pair"]] == list(same),
              f"60 pairs: distances equal numpy's on inception embed's embeddings (max difference "
              f"{np.abs(got - distances).max():.1e})")
        expected = protocol(got, same)
        folds = report["folds"]
        for key in ("accuracy", "threshold", "val", "far"):
            check(np.allclose([f[key] for f in folds], expected[key], rtol=0, atol=1e-12),
                  f"each fold's {key} as numpy's 10-fold protocol: {[round(f[key], 4) for f in folds]}")
        check(abs(report["accuracy"] - np.mean(expected["accuracy"])) < 1e-12
              and abs(report["accuracy_std"] - np.std(expected["accuracy"])) < 1e-12
              and abs(report["val"] - np.mean(expected["val"])) < 1e-12,
              f"accuracy {report['accuracy']:.4f} ± {report['accuracy_std']:.4f}, VAL {report['val']:.4f}")
        fpr, tpr, _ = roc_curve(same, -got, drop_intermediate=False)
        check(np.allclose(np.array(report["roc"]), np.stack([fpr, tpr], axis=1), rtol=0, atol=1e-12)
              and abs(report["auc"] - auc(fpr, tpr)) < 1e-12,
              f"the ROC ({len(fpr)} points) and its AUC {report['auc']:.6f} as scikit-learn's roc_curve and auc")
        simple = json.loads(inception(args, "verify", *model, "--pairs", os.path.join(scratch, "simple.txt"),
                                      "--images", folder, "--json"))
        check({k: simple[k] for k in ("accuracy", "val", "auc")} == {k: report[k] for k in ("accuracy", "val", "auc")},
              "the simple pairs format (no header) gives the same figures")
        check(ElementTree.parse(svg).getroot().tag.endswith("svg"), "the ROC curve is an SVG document")
        a, b = (os.path.join(folder, pairs[0][0]), os.path.join(folder, pairs[0][1]))
        compared = json.loads(inception(args, "compare", *model, "--json", "--threshold", "0.9", a, b))
        check(abs(compared["distance"] - distances[0]) < 1e-9 and compared["same"] == (distances[0] < 0.9),
              f"compare: distance {compared['distance']:.4f} and the decision at 0.9 as numpy's")
    print("verify_check: every check passed")


if __name__ == "__main__":
    main()
