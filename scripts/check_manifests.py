#!/usr/bin/env python3
"""Validates deploy/'s manifests against the schemas they claim:

- Kubernetes' own kinds (Deployment, Service, HorizontalPodAutoscaler) with kubernetes-validate, strictly (an unknown
  field is an error), at the latest Kubernetes version it carries;
- KServe's (ServingRuntime, InferenceService) against the OpenAPI schema of KServe's CRDs as the `kserve` PyPI
  package generates its models from it (each model's `openapi_types` and `attribute_map`), and Kubernetes' types
  inside them (containers, probes, resources) as the `kubernetes` client's models define them: every field known,
  every value of its type, every required field present.

Then checks that the checks can fail: each manifest with an unknown field, a value of the wrong type, or a required
field removed must be refused. Also checks the manifests against the image and the server: the ports the
Containerfile exposes, probes on /ready and /health, --threads equal to the CPU limit.

    python scripts/check_manifests.py [DEPLOY_DIR]    prints one line per manifest; exits 1 naming the first problem
"""
import copy
import glob
import importlib.util
import os
import re
import sys
import types

import yaml


def kserve_models():
    """kserve.models without the kserve package's __init__ (which imports its model server and its dependencies)."""
    spec = importlib.util.find_spec("kserve")
    package = types.ModuleType("kserve")
    package.__path__ = list(spec.submodule_search_locations)
    sys.modules["kserve"] = package
    import kserve.models
    return kserve.models


KSERVE = kserve_models()
import kubernetes.client.models as K8S  # noqa: E402
import kubernetes_validate  # noqa: E402

KSERVE_KINDS = {("serving.kserve.io/v1alpha1", "ServingRuntime"): "V1alpha1ServingRuntime",
                ("serving.kserve.io/v1beta1", "InferenceService"): "V1beta1InferenceService"}
SCALARS = {"str": str, "int": int, "bool": bool, "float": (int, float), "object": object, "datetime": str,
           "date": str}


class Invalid(Exception):
    pass


def model_class(name):
    """KServe's own types (V1alpha1…, V1beta1…, Knative…) from kserve, Kubernetes' from its client."""
    kserve_first = re.match(r"V1(alpha|beta)\d|Knative|K8sIo", name)
    for module in (KSERVE, K8S) if kserve_first else (K8S, KSERVE):
        if hasattr(module, name):
            return getattr(module, name)
    raise Invalid(f"no model {name} in kserve or kubernetes")


def check(value, type_name, path):
    """`value` (parsed YAML) against the OpenAPI type `type_name` of a generated model."""
    if value is None:
        return
    type_name = re.sub(r"^List\[(.*)\]$", r"list[\1]", re.sub(r"^Dict\[(.*)\]$", r"dict(\1)", type_name))
    if type_name.startswith("list["):
        if not isinstance(value, list):
            raise Invalid(f"{path}: expected a list, got {type(value).__name__}")
        for i, item in enumerate(value):
            check(item, type_name[5:-1], f"{path}[{i}]")
        return
    if type_name.startswith("dict("):
        inner = type_name[5:-1].split(", ", 1)[1]
        if not isinstance(value, dict):
            raise Invalid(f"{path}: expected a map, got {type(value).__name__}")
        for key, item in value.items():
            check(item, inner, f"{path}.{key}")
        return
    if type_name in SCALARS:
        expected = SCALARS[type_name]
        if type_name == "int" and isinstance(value, bool) or not isinstance(value, expected):
            raise Invalid(f"{path}: expected {type_name}, got {value!r}")
        return
    # A quantity or an int-or-string (resource.Quantity, IntOrString, KServe's MetricQuantity): no fields.
    cls = None if re.search(r"Quantity$|IntOrString$", type_name) else model_class(type_name)
    types_, names = (cls.openapi_types, cls.attribute_map) if cls else ({}, {})
    if not types_:
        if not isinstance(value, (str, int, float)):
            raise Invalid(f"{path}: expected a quantity, got {value!r}")
        return
    if not isinstance(value, dict):
        raise Invalid(f"{path}: expected an object ({type_name}), got {value!r}")
    fields = {json: python for python, json in names.items()}
    for key, item in value.items():
        if key not in fields:
            raise Invalid(f"{path}: unknown field '{key}' for {type_name}")
        check(item, types_[fields[key]], f"{path}.{key}")
    for field in required(cls):
        if names[field] not in value:
            raise Invalid(f"{path}: required field '{names[field]}' of {type_name} is missing")


REQUIRED = {}


def required(cls):
    """The fields a model requires: pydantic's required fields, or those whose absence the generated constructor
    refuses (client-side validation), each tried alone with the others present."""
    if cls not in REQUIRED:
        if hasattr(cls, "model_fields"):
            REQUIRED[cls] = {n for n, f in cls.model_fields.items() if f.is_required() and n in cls.openapi_types}
        else:
            REQUIRED[cls] = set()
            for field in cls.openapi_types:
                try:
                    cls(**{other: "x" for other in cls.openapi_types if other != field})
                except ValueError:
                    REQUIRED[cls].add(field)
                except Exception:
                    pass
    return REQUIRED[cls]


def validate(document, version):
    key = (document.get("apiVersion"), document.get("kind"))
    if key in KSERVE_KINDS:
        check(document, KSERVE_KINDS[key], document["kind"])
        return f"KServe {KSERVE_KINDS[key]} (kserve {kserve_version()})"
    try:
        kubernetes_validate.validate(document, version, strict=True)
    except kubernetes_validate.ValidationError as error:
        raise Invalid(f"{document.get('kind')}: {error.message} at {'/'.join(map(str, error.path))}") from None
    return f"Kubernetes {version} schema"


def kserve_version():
    from importlib.metadata import version
    return version("kserve")


def mutations(document):
    """Broken copies that must be refused: an unknown field at the top of the spec, a list given where a map is
    expected, the containers' required `name` removed (or, with none, `spec` made a string)."""
    unknown = copy.deepcopy(document)
    unknown["spec"]["replicaz"] = 2
    wrong = copy.deepcopy(document)
    wrong["metadata"]["labels"] = ["not", "a", "map"]
    yield "an unknown field", unknown
    yield "a list for a map", wrong
    if containers(document):
        missing = copy.deepcopy(document)
        for container in containers(missing):
            container.pop("name", None)
        yield "a container without its name", missing


def containers(document):
    spec = document.get("spec", {})
    found = spec.get("containers", []) + spec.get("template", {}).get("spec", {}).get("containers", [])
    return found


def consistent(document):
    """The manifest against the image and the server's command line."""
    for container in containers(document):
        arguments = " ".join(container.get("args", []))
        threads = re.search(r"--threads[= ](\d+)", arguments)
        cpu = container.get("resources", {}).get("limits", {}).get("cpu")
        if threads and cpu and threads.group(1) != str(cpu):
            raise Invalid(f"{document['kind']}: --threads {threads.group(1)} but a CPU limit of {cpu}")
        for probe, path in (("readinessProbe", "/ready"), ("livenessProbe", "/health")):
            if probe in container and container[probe]["httpGet"]["path"] != path:
                raise Invalid(f"{document['kind']}: {probe} on {container[probe]['httpGet']['path']}, not {path}")
        exposed = set(re.findall(r"\d+", re.search(r"^EXPOSE (.*)$", CONTAINERFILE, re.M).group(1)))
        for port in container.get("ports", []):
            if str(port["containerPort"]) not in exposed:
                raise Invalid(f"{document['kind']}: port {port['containerPort']} is not one the image exposes")


CONTAINERFILE = open(os.path.join(os.path.dirname(__file__), "..", "Containerfile")).read()


def main():
    folder = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "deploy")
    version = kubernetes_validate.latest_version()
    files = sorted(glob.glob(os.path.join(folder, "**", "*.yaml"), recursive=True))
    if not files:
        sys.exit(f"check_manifests: no manifests in {folder}")
    for path in files:
        with open(path) as f:
            documents = [d for d in yaml.safe_load_all(f) if d]
        for document in documents:
            name = f"{os.path.relpath(path, folder)}: {document['kind']} {document['metadata']['name']}"
            try:
                schema = validate(document, version)
                consistent(document)
            except Invalid as error:
                sys.exit(f"check_manifests: {name}: {error}")
            for what, broken in mutations(document):
                try:
                    validate(broken, version)
                except Invalid:
                    continue
                sys.exit(f"check_manifests: {name}: {what} passed the {schema} check")
            print(f"check_manifests: {name}: valid against the {schema}; broken copies refused")
    print("check_manifests: every manifest is valid")


if __name__ == "__main__":
    main()
