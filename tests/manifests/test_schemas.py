"""Strict schema validation: every overlay is valid; unknown fields, wrong types and unknown kinds are errors."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from harness.checks.manifests.schemas import SchemaCatalog, strict_crd_schema
from harness.provisioning.objects import Obj
from tests.manifests.helpers import OVERLAYS, the

Rendered = Callable[[str], list[Obj]]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_of_every_overlay_is_valid(overlay: str, catalog: SchemaCatalog, rendered: Rendered) -> None:
    findings = [str(f) for obj in rendered(overlay) for f in catalog.validate(obj)]
    assert findings == []


def test_every_rendered_kind_has_a_schema(catalog: SchemaCatalog, rendered: Rendered) -> None:
    kinds = {(o["apiVersion"], o["kind"]) for name in OVERLAYS for o in rendered(name)}
    assert all(catalog.validator(api, kind) is not None for api, kind in kinds)
    # Both sources are in use: Kubernetes' own schemas and the CRDs.
    assert ("apps/v1", "Deployment") in kinds
    assert ("serving.kserve.io/v1beta1", "InferenceService") in kinds


def test_a_misspelt_scale_target_names_the_object_and_the_path(catalog: SchemaCatalog, rendered: Rendered) -> None:
    isvc = the(rendered("milestone1"), "InferenceService", "ocr")
    isvc["spec"]["predictor"]["scaleTargt"] = isvc["spec"]["predictor"].pop("scaleTarget")
    findings = catalog.validate(isvc)
    assert [str(f) for f in findings] == [
        "InferenceService/ocr-dev/ocr: [schema] at spec.predictor.scaleTargt: unknown field"
    ]
    assert (findings[0].obj, findings[0].path) == ("InferenceService/ocr-dev/ocr", "spec.predictor.scaleTargt")


def test_a_kind_without_a_schema_is_an_error(catalog: SchemaCatalog) -> None:
    widget = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w", "namespace": "ocr-dev"}}
    findings = catalog.validate(widget)
    assert len(findings) == 1
    assert findings[0].obj == "Widget/ocr-dev/w"
    assert "no schema for kind Widget in example.com/v1" in findings[0].message


def test_an_unserved_version_of_a_known_kind_has_no_schema(catalog: SchemaCatalog, rendered: Rendered) -> None:
    isvc = the(rendered("milestone1"), "InferenceService", "ocr")
    isvc["apiVersion"] = "serving.kserve.io/v1alpha9"
    assert "no schema" in catalog.validate(isvc)[0].message


def test_a_builtin_kind_is_strict_too(catalog: SchemaCatalog, rendered: Rendered) -> None:
    worker = the(rendered("milestone3"), "Deployment", "ocr-worker")
    container = worker["spec"]["template"]["spec"]["containers"][0]
    container["imagePullPolicyy"] = container.pop("imagePullPolicy")
    worker["spec"]["replicas"] = "3"
    found = {(f.path, f.message) for f in catalog.validate(worker)}
    assert ("spec.template.spec.containers[0].imagePullPolicyy", "unknown field") in found
    assert ("spec.replicas", "'3' is not of type 'integer', 'null'") in found


def test_custom_kinds_check_metadata_as_object_meta(catalog: SchemaCatalog, rendered: Rendered) -> None:
    scaled = the(rendered("milestone3"), "ScaledObject", "ocr-worker")
    scaled["metadata"]["label"] = {"a": "b"}
    assert [(f.path, f.message) for f in catalog.validate(scaled)] == [("metadata.label", "unknown field")]


def test_preserved_and_mapped_fields_stay_open_and_typed(catalog: SchemaCatalog, rendered: Rendered) -> None:
    objects = rendered("milestone3")
    envoyfilter = the(objects, "EnvoyFilter", "ocr-ratelimit-filter")
    # patch.value is x-kubernetes-preserve-unknown-fields: anything Envoy accepts may go there...
    envoyfilter["spec"]["configPatches"][0]["patch"]["value"]["any_envoy_field"] = {"x": 1}
    assert catalog.validate(envoyfilter) == []
    # ...but the declared fields around it stay closed.
    envoyfilter["spec"]["configPatches"][0]["match"]["contxt"] = "GATEWAY"
    assert [f.path for f in catalog.validate(envoyfilter)] == ["spec.configPatches[0].match.contxt"]
    # Trigger metadata is a string map: any key, string values only.
    scaled = the(objects, "ScaledObject", "ocr-worker")
    scaled["spec"]["triggers"][0]["metadata"]["anyKey"] = "1"
    assert catalog.validate(scaled) == []
    scaled["spec"]["triggers"][0]["metadata"]["lagCount"] = 5
    assert [(f.path, f.message) for f in catalog.validate(scaled)] == [
        ("spec.triggers[0].metadata.lagCount", "5 is not of type 'string'")
    ]


def test_strict_crd_schema_closes_objects_unless_told_otherwise() -> None:
    schema = strict_crd_schema(
        {
            "type": "object",
            "properties": {
                "spec": {
                    "type": "object",
                    "properties": {
                        "closed": {"type": "object", "properties": {"a": {"type": "string"}}},
                        "empty": {"type": "object"},
                        "open": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                        "map": {"type": "object", "additionalProperties": {"type": "integer"}},
                        "port": {"x-kubernetes-int-or-string": True},
                        "maybe": {"type": "string", "nullable": True},
                    },
                }
            },
        }
    )
    spec = schema["properties"]["spec"]
    assert schema["additionalProperties"] is False
    assert spec["additionalProperties"] is False
    assert spec["properties"]["closed"]["additionalProperties"] is False
    assert spec["properties"]["empty"]["additionalProperties"] is False
    assert "additionalProperties" not in spec["properties"]["open"]
    assert spec["properties"]["map"]["additionalProperties"] == {"type": "integer"}
    assert spec["properties"]["port"]["anyOf"] == [{"type": "integer"}, {"type": "string"}]
    assert spec["properties"]["maybe"]["type"] == ["string", "null"]
    assert schema["properties"]["metadata"]["$ref"].endswith("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta")


def test_scope_of_kinds(catalog: SchemaCatalog) -> None:
    assert catalog.is_namespaced("v1", "Namespace") is False
    assert catalog.is_namespaced("apps/v1", "Deployment") is True
    assert catalog.is_namespaced("security.istio.io/v1", "PeerAuthentication") is True
    assert catalog.is_namespaced("example.com/v1", "Widget") is None
