#!/usr/bin/env python3
"""Class activation maps from pytorch-grad-cam (PyPI grad-cam 1.5.7) for the explanation tests, on the weights
make_references.py wrote (timm's inception_v4 and inception_resnet_v2, facenet-pytorch's InceptionResnetV1) and
real photos through each model's eval transform.

For each model folder it writes cam_x.npy (the inputs, NCHW float32), cam_targets.json (each image's target: a
class index, or null for the top class; the face model's concept embedding in cam_concept.npy) and, for each
method and layer, cam_<method>_<layer>.npy (n × size × size, the maps pytorch-grad-cam returns). Layers are named
as the reference names them (features.21, conv2d_7b, block8 …): the last block before pooling and one earlier
stage, so that the backward pass crosses whole blocks. EigenCAM's map depends on the sign LAPACK gives the first
singular vector; cam_eigencam_signfix_<layer>.npy holds the map with pytorch-grad-cam's own sign correction
(get_2d_projection_with_sign_correction), the rule the Swift implementation follows.

Usage: make_cam_references.py REFERENCE_DIR
"""
import json
import os
import sys

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file

sys.path.insert(0, os.path.dirname(__file__))
import make_references as refs  # noqa: E402
from pytorch_grad_cam import EigenCAM, GradCAM, GradCAMPlusPlus, HiResCAM, LayerCAM, XGradCAM  # noqa: E402
from pytorch_grad_cam.utils import svd_on_activations  # noqa: E402
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget  # noqa: E402

METHODS = {"gradcam": GradCAM, "gradcam++": GradCAMPlusPlus, "xgradcam": XGradCAM, "hirescam": HiResCAM,
           "layercam": LayerCAM, "eigencam": EigenCAM}
LAYERS = {"inception_v4": ["features.21", "features.17"], "inception_resnet_v2": ["conv2d_7b", "mixed_7a"],
          "inception_resnet_v1_facenet": ["block8", "mixed_7a"]}
# Classifier photos (skimage's), each explained for its top class, then the first one again for another class.
PHOTOS = ["chelsea.png", "coffee.png", "astronaut.png"]


class SimilarityToConceptTarget:
    """pytorch-grad-cam's target for embeddings, as its tutorial "Pixel Attribution for embeddings" defines it (the
    package does not ship it): the cosine similarity of the model's output to a concept's features."""

    def __init__(self, features):
        self.features = features

    def __call__(self, model_output):
        return torch.nn.CosineSimilarity(dim=0)(model_output, self.features)


def module(model, path):
    return dict(model.named_modules())[path]


def maps(method, model, layer, x, targets):
    with METHODS[method](model=model, target_layers=[module(model, layer)]) as cam:
        return cam(input_tensor=x, targets=targets)


def sign_fixed_eigencam(model, layer, x):
    plain = svd_on_activations.get_2d_projection
    import pytorch_grad_cam.eigen_cam as eigen
    eigen.get_2d_projection = svd_on_activations.get_2d_projection_with_sign_correction
    try:
        return maps("eigencam", model, layer, x, None)
    finally:
        eigen.get_2d_projection = plain


def make(name, folder):
    model = refs.create(name)
    model.load_state_dict(load_file(os.path.join(folder, "weights.safetensors")))
    model.eval()
    skimage_photos = dict(zip(refs.PHOTOS, refs.photos()))
    if refs.is_facenet(name):
        model.classify = False
        astronaut = skimage_photos["astronaut.png"]
        face = astronaut.crop((140, 20, 300, 200))  # the astronaut's face, a real crop
        other = face.transpose(Image.FLIP_LEFT_RIGHT).rotate(8)  # the same face seen otherwise
        x = refs.batch(name, model, [face, other], 160)
        # The concept: a third view of the face (a face compared with itself has a zero gradient at cos = 1).
        third = refs.batch(name, model, [astronaut.crop((120, 0, 320, 230))], 160)
        with torch.no_grad():
            concept = model(third)[0]
        targets = [SimilarityToConceptTarget(concept), SimilarityToConceptTarget(concept)]
        np.save(os.path.join(folder, "cam_concept.npy"), concept.numpy().astype(np.float32))
        recorded = ["similarity", "similarity"]
    else:
        chosen = [skimage_photos[p] for p in PHOTOS] + [skimage_photos[PHOTOS[0]]]
        x = refs.batch(name, model, chosen, 299)
        with torch.no_grad():
            second = int(model(x[3:4])[0].topk(2).indices[1])
        recorded = [None, None, None, second]
        targets = [ClassifierOutputTarget(int(model(x[i:i + 1]).argmax())) for i in range(3)]
        targets.append(ClassifierOutputTarget(second))
    np.save(os.path.join(folder, "cam_x.npy"), x.numpy().astype(np.float32))
    with open(os.path.join(folder, "cam_targets.json"), "w") as f:
        json.dump({"targets": recorded, "layers": LAYERS[name], "methods": list(METHODS)}, f)
    for layer in LAYERS[name]:
        for method in METHODS:
            result = maps(method, model, layer, x, None if method == "eigencam" else targets)
            np.save(os.path.join(folder, f"cam_{method}_{layer}.npy"), result.astype(np.float32))
        fixed = sign_fixed_eigencam(model, layer, x)
        np.save(os.path.join(folder, f"cam_eigencam_signfix_{layer}.npy"), fixed.astype(np.float32))
    print(json.dumps({"model": name, "cam_references": len(LAYERS[name]) * (len(METHODS) + 1)}))


def main():
    out = sys.argv[1]
    torch.set_num_threads(os.cpu_count() or 1)
    for name in LAYERS:
        folder = os.path.join(out, name)
        if os.path.exists(os.path.join(folder, "weights.safetensors")):
            make(name, folder)


if __name__ == "__main__":
    sys.exit(main())
