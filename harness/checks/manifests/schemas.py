"""Strict schema validation of rendered objects.

Built-in kinds are checked against Kubernetes' own OpenAPI, as the JSON schemas that kubernetes-validate ships
for the pinned Kubernetes version in their *strict* form (every object refuses properties it does not
declare). Custom kinds are checked against the ``openAPIV3Schema`` of the matching served version of a CRD,
made strict the way the API server reads a structural schema: a property not declared in ``properties`` is an
error unless its object says ``x-kubernetes-preserve-unknown-fields: true`` or has an ``additionalProperties``
schema; ``metadata`` is checked as Kubernetes' ObjectMeta. A kind that has no schema is an error, not a pass.

Not evaluated: CEL rules (``x-kubernetes-validations``) and ``format`` (int32 ranges, dates).
"""

from __future__ import annotations

import copy
import json
import re
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator, ValidationError
from jsonschema.exceptions import best_match
from referencing import Registry, Resource

from harness.checks.manifests.crds import CrdVersion, load_crds
from harness.errors import HarnessError
from harness.provisioning import versions
from harness.provisioning.objects import Finding, Obj, finding

DEFINITIONS_URI = "https://kubernetes.io/api/_definitions.json"
OBJECT_META_REF = f"{DEFINITIONS_URI}#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
MAX_MESSAGE = 300

# Built-in kinds that live outside namespaces (the JSON schemas do not say; the API's discovery does).
CLUSTER_SCOPED_BUILTINS = frozenset(
    """
    APIService CSIDriver CSINode CertificateSigningRequest ClusterRole ClusterRoleBinding ClusterTrustBundle
    ComponentStatus CustomResourceDefinition DeviceClass FlowSchema IPAddress IngressClass
    MutatingAdmissionPolicy MutatingAdmissionPolicyBinding MutatingWebhookConfiguration Namespace Node
    PersistentVolume PriorityClass PriorityLevelConfiguration ResourceSlice RuntimeClass SelfSubjectAccessReview
    SelfSubjectReview SelfSubjectRulesReview ServiceCIDR StorageClass StorageVersion StorageVersionMigration
    SubjectAccessReview TokenReview ValidatingAdmissionPolicy ValidatingAdmissionPolicyBinding
    ValidatingWebhookConfiguration VolumeAttachment VolumeAttributesClass
    """.split()
)


def builtin_schema_dir(kubernetes_version: str = versions.KUBERNETES) -> Traversable:
    """kubernetes-validate's strict JSON schemas for one Kubernetes version."""
    root = resources.files("kubernetes_validate").joinpath("kubernetes-json-schema")
    directory = root.joinpath(f"v{kubernetes_version}-local-strict")
    if not directory.is_dir():
        known = sorted(p.name for p in root.iterdir() if p.name.endswith("-strict"))
        raise HarnessError(
            f"kubernetes-validate has no strict schemas for Kubernetes {kubernetes_version} (it has: "
            f"{', '.join(known)}); upgrade kubernetes-validate"
        )
    return directory


def split_api_version(api_version: str) -> tuple[str, str]:
    """``apps/v1`` -> (``apps``, ``v1``); ``v1`` -> (``""``, ``v1``)."""
    group, _, version = api_version.rpartition("/")
    return group, version


def strict_crd_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """A CRD's openAPIV3Schema as a JSON schema that refuses undeclared fields (see the module docstring)."""
    root = _strict(copy.deepcopy(schema))
    root["type"] = "object"
    properties = root.setdefault("properties", {})
    properties.setdefault("apiVersion", {"type": "string"})
    properties.setdefault("kind", {"type": "string"})
    properties["metadata"] = {"$ref": OBJECT_META_REF}
    if not root.get("x-kubernetes-preserve-unknown-fields") and not isinstance(root.get("additionalProperties"), dict):
        root["additionalProperties"] = False
    return root


def _strict(node: Any) -> Any:
    """Close every object node of a structural schema that neither preserves unknown fields nor maps values."""
    if not isinstance(node, dict):
        return node
    if node.get("x-kubernetes-int-or-string") and not ({"type", "anyOf", "oneOf"} & node.keys()):
        node["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if node.get("nullable") and isinstance(node.get("type"), str):
        node["type"] = [node["type"], "null"]
    if node.get("x-kubernetes-embedded-resource"):
        properties = node.setdefault("properties", {})
        for field in ("apiVersion", "kind"):
            properties.setdefault(field, {"type": "string"})
        properties.setdefault("metadata", {"type": "object", "x-kubernetes-preserve-unknown-fields": True})
    for child in (node.get("properties") or {}).values():
        _strict(child)
    if isinstance(node.get("items"), dict):
        _strict(node["items"])
    extra = node.get("additionalProperties")
    if isinstance(extra, dict):
        _strict(extra)
    # Value constraints in anyOf/allOf/oneOf/not are left alone: structural schemas declare fields only in
    # properties, so closing those branches would refuse fields the main schema declares.
    is_object = node.get("type") == "object" or "properties" in node
    if is_object and extra is None and not node.get("x-kubernetes-preserve-unknown-fields"):
        node["additionalProperties"] = False
    return node


class SchemaCatalog:
    """Schemas for built-in kinds (one Kubernetes version) and custom kinds (CRDs in one directory)."""

    def __init__(self, crd_dir: Path, *, kubernetes_version: str = versions.KUBERNETES) -> None:
        self.crd_dir = crd_dir
        self.kubernetes_version = kubernetes_version
        self._builtin_dir = builtin_schema_dir(kubernetes_version)
        definitions = json.loads(self._builtin_dir.joinpath("_definitions.json").read_text(encoding="utf-8"))
        self._registry: Registry[Any] = Registry().with_resource(DEFINITIONS_URI, Resource.from_contents(definitions))
        self._crds: dict[tuple[str, str, str], CrdVersion] | None = None
        self._validators: dict[tuple[str, str], Draft202012Validator | None] = {}

    @property
    def crds(self) -> dict[tuple[str, str, str], CrdVersion]:
        if self._crds is None:
            self._crds = load_crds(self.crd_dir)
        return self._crds

    def builtin_schema(self, api_version: str, kind: str) -> dict[str, Any] | None:
        """Kubernetes' schema for a built-in kind, or None if the kind is not built in."""
        group, version = split_api_version(api_version)
        prefix = group.split(".")[0]
        name = f"{kind.lower()}-{prefix}-{version}.json" if group else f"{kind.lower()}-{version}.json"
        path = self._builtin_dir.joinpath(name)
        if not path.is_file():
            return None
        schema: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        # File names drop the group's domain: make sure this is the very kind, not a namesake in another group.
        gvks = schema.get("x-kubernetes-group-version-kind") or []
        if {"group": group, "version": version, "kind": kind} not in gvks:
            return None
        return schema

    def crd(self, api_version: str, kind: str) -> CrdVersion | None:
        group, version = split_api_version(api_version)
        return self.crds.get((group, version, kind))

    def validator(self, api_version: str, kind: str) -> Draft202012Validator | None:
        """A (cached) strict validator for a kind, or None when no schema is known."""
        key = (api_version, kind)
        if key not in self._validators:
            schema = self.builtin_schema(api_version, kind)
            if schema is None:
                crd = self.crd(api_version, kind)
                schema = strict_crd_schema(crd.schema) if crd else None
            self._validators[key] = None if schema is None else Draft202012Validator(schema, registry=self._registry)
        return self._validators[key]

    def is_namespaced(self, api_version: str, kind: str) -> bool | None:
        """Whether objects of a kind live in a namespace; None for a kind without a schema."""
        if self.builtin_schema(api_version, kind) is not None:
            return kind not in CLUSTER_SCOPED_BUILTINS
        crd = self.crd(api_version, kind)
        return crd.namespaced if crd else None

    def validate(self, obj: Obj) -> list[Finding]:
        """Every schema violation of one object (an empty list when it is valid)."""
        api_version, kind = obj.get("apiVersion"), obj.get("kind")
        if not isinstance(api_version, str) or not isinstance(kind, str):
            return [finding(obj, "schema", "apiVersion and kind must both be set")]
        validator = self.validator(api_version, kind)
        if validator is None:
            return [
                finding(
                    obj,
                    "schema",
                    f"no schema for kind {kind} in {api_version}: not built into Kubernetes "
                    f"{self.kubernetes_version} and no served CRD version under {self.crd_dir}",
                )
            ]
        errors = sorted(validator.iter_errors(obj), key=lambda e: [str(p) for p in e.absolute_path])
        return [found for error in errors for found in _describe(obj, error)]


def _describe(obj: Obj, error: ValidationError) -> list[Finding]:
    """Findings for one jsonschema error: unknown fields by name, alternatives by their closest miss."""
    path = list(error.absolute_path)
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        schema = error.schema if isinstance(error.schema, dict) else {}
        declared = set(schema.get("properties") or {})
        patterns = list(schema.get("patternProperties") or {})
        unknown = [
            key for key in error.instance if key not in declared and not any(re.search(p, key) for p in patterns)
        ]
        if unknown:
            return [finding(obj, "schema", "unknown field", [*path, key]) for key in sorted(unknown)]
    if error.validator in ("anyOf", "oneOf") and error.context:
        closest = best_match(error.context)
        if closest is not None:
            return _describe(obj, closest)
    message = error.message if len(error.message) <= MAX_MESSAGE else error.message[:MAX_MESSAGE] + "..."
    return [finding(obj, "schema", message, path)]
