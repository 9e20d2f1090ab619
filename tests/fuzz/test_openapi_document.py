"""What the fuzzer relies on in the OpenAPI document: uploads are binary, and every operation says what it answers.

Schemathesis generates bodies from the document: an upload described as a text string would be sent as
text and never reach the image decoders. These checks read the document the app generates, in-process.
"""

from __future__ import annotations

from typing import Any

import pytest

from service.api.app import create_app
from service.settings import load_settings


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return create_app(load_settings()).openapi()


def resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        *_, name = schema["$ref"].split("/")
        schema = document["components"]["schemas"][name]
    return schema


def multipart_bodies(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    bodies = {}
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            content = operation.get("requestBody", {}).get("content", {})
            if "multipart/form-data" in content:
                bodies[f"{method.upper()} {path}"] = resolve(document, content["multipart/form-data"]["schema"])
    return bodies


def test_every_upload_is_a_required_binary_file_field(document: dict[str, Any]) -> None:
    bodies = multipart_bodies(document)
    assert set(bodies) == {"POST /predict", "POST /jobs"}
    for operation, schema in bodies.items():
        assert "file" in schema.get("required", []), operation
        field = schema["properties"]["file"]
        # OpenAPI 3.0 says binary with format; 3.1 with contentMediaType. Either makes Schemathesis send bytes.
        binary = field.get("format") == "binary" or "contentMediaType" in field
        assert field.get("type") == "string" and binary, f"{operation}: file is {field}"


def test_every_operation_documents_its_error_answers(document: dict[str, Any]) -> None:
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            statuses = set(operation["responses"])
            assert any(s.startswith("2") for s in statuses), f"{method.upper()} {path}: {statuses}"
            if "requestBody" in operation:
                # Bad or missing uploads: what the service answers, not FastAPI's default validation body. The
                # Open Inference Protocol's routes answer its own shape, and a missing field there is a 400.
                oip = path.startswith("/v2/")
                body = "OipError" if oip else "ErrorBody"
                for status in ("400", "413", "415") if oip else ("400", "413", "415", "422"):
                    assert status in statuses, f"{method.upper()} {path} does not document {status}"
                    schema = operation["responses"][status]["content"]["application/json"]["schema"]
                    assert schema == {"$ref": f"#/components/schemas/{body}"}, (method, path, status)
