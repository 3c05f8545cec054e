"""Building the kustomizations under deploy/ for the tests.

`build()` uses real kustomize through `kubectl kustomize` when kubectl is on PATH (the
project's machines have it). `build_python()` is a small stand-in that reads
kustomization.yaml itself: `resources` (files and directories), `patches` given by `path`
(strategic merge, matched on kind and name) and `namespace`. It refuses any other field,
so a kustomization that outgrows it fails loudly instead of being half-built; the tests
check that it agrees with real kustomize wherever kubectl is available.
"""

from __future__ import annotations

import copy
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

SUPPORTED_FIELDS = {"apiVersion", "kind", "resources", "patches", "namespace"}

# Kinds without a namespace that can appear here (kustomize must not give them one).
CLUSTER_SCOPED = {
    "ClusterRole",
    "ClusterRoleBinding",
    "Namespace",
    "CustomResourceDefinition",
    "PersistentVolume",
    "StorageClass",
    "PriorityClass",
    "IngressClass",
    "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
}

# Strategic-merge list merge keys of the core types (k8s.io/api patchMergeKey tags) that a
# patch here could touch; any other list is replaced whole, as kustomize does.
MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "env": "name",
    "ports": "containerPort",
    "imagePullSecrets": "name",
}


def kubectl_available() -> bool:
    return shutil.which("kubectl") is not None


def build(directory: Path) -> list[dict[str, Any]]:
    """Real kustomize (kubectl kustomize) if available, otherwise build_python()."""
    if kubectl_available():
        return build_kubectl(directory)
    return build_python(directory)


def build_kubectl(directory: Path) -> list[dict[str, Any]]:
    result = subprocess.run(
        ["kubectl", "kustomize", str(directory)],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def build_python(directory: Path) -> list[dict[str, Any]]:
    directory = Path(directory)
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unsupported = set(kustomization) - SUPPORTED_FIELDS
    if unsupported:
        raise NotImplementedError(
            f"{directory}/kustomization.yaml uses {sorted(unsupported)}, "
            "which this stand-in does not implement; use real kustomize"
        )

    objects: list[dict[str, Any]] = []
    for resource in kustomization.get("resources", []):
        path = directory / resource
        if path.is_dir():
            objects.extend(build_python(path))
        else:
            objects.extend(doc for doc in yaml.safe_load_all(path.read_text()) if doc)

    for patch in kustomization.get("patches", []):
        if set(patch) != {"path"}:
            raise NotImplementedError(f"patch {patch}: only `path:` patches are implemented")
        for patch_doc in yaml.safe_load_all((directory / patch["path"]).read_text()):
            if not patch_doc:
                continue
            targets = [
                obj
                for obj in objects
                if obj["kind"] == patch_doc["kind"]
                and obj["metadata"]["name"] == patch_doc["metadata"]["name"]
            ]
            if len(targets) != 1:
                raise ValueError(
                    f"patch for {patch_doc['kind']}/{patch_doc['metadata']['name']} "
                    f"matches {len(targets)} objects"
                )
            _strategic_merge(targets[0], patch_doc)

    namespace = kustomization.get("namespace")
    if namespace:
        service_accounts = {o["metadata"]["name"] for o in objects if o["kind"] == "ServiceAccount"}
        for obj in objects:
            if obj["kind"] not in CLUSTER_SCOPED:
                obj["metadata"]["namespace"] = namespace
            if obj["kind"] in ("RoleBinding", "ClusterRoleBinding"):
                for subject in obj.get("subjects", []):
                    if subject.get("kind") == "ServiceAccount" and (
                        subject["name"] in service_accounts or subject["name"] == "default"
                    ):
                        subject["namespace"] = namespace
    return objects


def _strategic_merge(target: dict[str, Any], patch: dict[str, Any]) -> None:
    for key, value in patch.items():
        if isinstance(key, str) and key.startswith("$"):
            raise NotImplementedError(f"strategic-merge directive {key} is not implemented")
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            _strategic_merge(target[key], value)
        elif isinstance(value, list) and key in MERGE_KEYS and isinstance(target.get(key), list):
            merge_key = MERGE_KEYS[key]
            for item in value:
                existing = next(
                    (t for t in target[key] if t.get(merge_key) == item.get(merge_key)), None
                )
                if existing is None:
                    target[key].append(copy.deepcopy(item))
                else:
                    _strategic_merge(existing, item)
        else:
            target[key] = copy.deepcopy(value)
