#!/usr/bin/env bash
# Builds the reference Python environment (CPU torch, timm, facenet-pytorch, ONNX Runtime, Triton's clients,
# scikit-learn, python-h2, the Kubernetes and KServe schemas) that generates the reference tensors for the tests,
# drives the server as a standard client does (and as a hostile one, in raw HTTP/2 frames), checks the evaluation
# protocols and the deploy/ manifests, and runs ONNX Runtime side by side in benchmarks. Idempotent.
# Usage: scripts/setup_reference_venv.sh [VENV_DIR]   (default: .venv-ref)
set -euo pipefail
venv="${1:-.venv-ref}"
triton=2.73.0  # tritonclient, the Open Inference Protocol's reference client
check='import torch, timm, safetensors, PIL, skimage, onnxruntime, onnx, facenet_pytorch, tritonclient.http'
check+=', tritonclient.grpc, sklearn, h2, kubernetes_validate, kubernetes.client, six, pytorch_grad_cam, cv2'
check+=', selenium'
check+='; import importlib.util as u; assert u.find_spec("kserve")'
if [ -x "$venv/bin/python" ] && "$venv/bin/python" -W ignore -c "$check" 2>/dev/null; then
  echo "reference venv ready: $venv"; exit 0
fi
rm -rf "$venv"
python3 -m venv "$venv"
pip=("$venv/bin/python" -m pip install -q --disable-pip-version-check --no-cache-dir)
# PyPI's Linux torch wheels load CUDA libraries at import (several GB of them). This machine image carries the
# CPU build in /opt/wheels; use it when present, else PyPI's torch with its CUDA dependencies.
cpu_wheel=$(ls /opt/wheels/torch-2.13.0+cpu-*.whl 2>/dev/null | head -n 1 || true)
if [ -n "$cpu_wheel" ]; then
  "${pip[@]}" --no-deps "$cpu_wheel" torchvision==0.28.0
else
  "${pip[@]}" torch==2.13.0 torchvision==0.28.0
fi
"${pip[@]}" --no-deps timm==1.0.31 facenet-pytorch==2.6.0
# Pillow 12: Pillow 13 (PR #9549) runs a resize's vertical pass first when it judges that cheaper, by a rule not
# documented, which moves single pixels of facenet-pytorch's face crops by one level; the Swift resize is Pillow's
# horizontal-then-vertical order, which every Pillow from 3.4 to 12 follows (docs/faces.md).
"${pip[@]}" filelock typing-extensions sympy networkx jinja2 fsspec numpy pillow==12.3.0 safetensors requests pyyaml \
  huggingface_hub scikit-image scikit-learn onnx onnxruntime==1.31.0 "tritonclient[http,grpc]==$triton" h2==4.4.1
# The deploy/ manifests' schemas (scripts/check_manifests.py): Kubernetes' from kubernetes-validate and the
# kubernetes client's models, KServe's from the models of its Python package (only those are imported: not its
# model server, hence --no-deps).
"${pip[@]}" kubernetes==37.0.3 kubernetes-validate==1.37.0 six
"${pip[@]}" --no-deps kserve==0.21.0
# pytorch-grad-cam, the explanations' reference: its wheel asks for the desktop OpenCV (and GUI libraries); the
# headless build is the same library. ttach, tqdm and matplotlib are imported by its package.
"${pip[@]}" --no-deps grad-cam==1.5.7
"${pip[@]}" opencv-python-headless==5.1.0.95 ttach==0.0.3 tqdm matplotlib
# The browser test of the server's page drives Debian's chromium through its chromedriver. Selenium's wheel asks for
# a newer certifi than the registry may carry; what it imports (urllib3, certifi, websocket-client) is installed.
"${pip[@]}" --no-deps selenium==4.53.0
"${pip[@]}" urllib3 certifi websocket-client typing-extensions
if [ -n "$cpu_wheel" ]; then
  # torchvision's compiled ops are a CUDA build that cannot load beside CPU torch; only its registration of
  # fake kernels for those ops fails at import. timm needs torchvision's pure-Python transforms alone.
  meta=$("$venv/bin/python" -c 'import importlib.util as u; print(u.find_spec("torchvision").submodule_search_locations[0])')/_meta_registrations.py
  echo "# emptied by scripts/setup_reference_venv.sh: the CUDA build of torchvision's C ops cannot load beside CPU torch" > "$meta"
fi
"$venv/bin/python" -W ignore -c "$check; print('torch', torch.__version__, 'timm', timm.__version__, 'onnxruntime', onnxruntime.__version__)"
echo "reference venv ready: $venv"
