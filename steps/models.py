"""Steps about the platform's models: each served by a service of its own (``Target.model_url``), each
answering in its own shape, and each naming itself (name, version, digest) in its answers and in /metrics."""

from __future__ import annotations

import base64
from typing import Any

import httpx
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families
from pytest_bdd import parsers, then, when

from harness.acceptance.evidence import ScenarioEvidence
from harness.acceptance.targets import Gateway, Models, Target, need
from harness.provisioning import samples
from steps.common import post_image

# The drawn table every table scenario sends: 4 rows (a header of words, then words and numbers), 3 columns.
TABLE = samples.table(2, rows=4, columns=3)


def page_for(model: str) -> Image.Image:
    """A page for ``model``: a short document for OCR (a full page costs it seconds), a full one for layout,
    a drawn table for the table model."""
    if model == "table":
        return TABLE.image
    return samples.layout_page(seed=1) if model == "layout" else samples.document(seed=1).image


def model_info(client: httpx.Client, url: str) -> dict[str, str]:
    """The labels of ``ocr_model_info`` in a service's /metrics: the identity of the model it loaded."""
    text = client.get(f"{url}/metrics").text
    for family in text_string_to_metric_families(text):
        if family.name in ("ocr_model", "ocr_model_info"):  # the parser's name varies
            for sample in family.samples:
                if sample.name == "ocr_model_info":
                    return dict(sample.labels)
    raise AssertionError("ocr_model_info is not in /metrics")


@when(parsers.parse('a client sends a document page to the "{model}" model'))
def send_page(target: Target, client: httpx.Client, ctx: dict, evidence: ScenarioEvidence, model: str) -> None:
    url = need(target, Models).model_url(model)
    page = page_for(model)
    ctx.update(model=model, model_url=url, page_size=page.size)
    ctx["response"] = post_image(client, url, samples.encode(page))
    body = ctx["response"].json()
    evidence.record(
        "predict", {"model": model, "status": ctx["response"].status_code, "model_named": body.get("model")}
    )


@then("the answer has the text of the page and its boxes")
def has_text(ctx: dict, evidence: ScenarioEvidence) -> None:
    body = ctx["response"].json()
    evidence.record("ocr_answer", {"lines": body["text"].count("\n") + 1, "boxes": len(body["boxes"])})
    assert body["text"].strip() and body["boxes"], body
    assert "regions" not in body, body


@then(parsers.parse("the answer finds {labels} regions inside the page"))
def finds_regions(ctx: dict, evidence: ScenarioEvidence, labels: str) -> None:
    wanted = {label.strip() for label in labels.replace(" and ", ",").split(",") if label.strip()}
    body = ctx["response"].json()
    regions = body["regions"]
    found = sorted({r["label"] for r in regions})
    evidence.record("layout_answer", {"labels": found, "regions": regions})
    assert wanted <= set(found), f"wanted {sorted(wanted)}, found {found}"
    width, height = ctx["page_size"]
    for r in regions:
        assert 0 <= r["x1"] <= r["x2"] <= width and 0 <= r["y1"] <= r["y2"] <= height, r
        assert 0 <= r["conf"] <= 1, r
    assert "text" not in body and "boxes" not in body, body


@then(parsers.parse('the answer names the model "{name}" with the version and digest its /metrics shows'))
def names_model(client: httpx.Client, ctx: dict, evidence: ScenarioEvidence, name: str) -> None:
    named = ctx["response"].json()["model"]
    info = model_info(client, ctx["model_url"])
    evidence.record("model_identity", {"response": named, "metrics": info})
    assert named["name"] == info["name"] == name, (named, info)
    assert named["version"] == info["version"], (named, info)
    assert len(info["digest"]) == 64 and named.get("digest") == info["digest"], (named, info)
    assert info["kind"] == ctx["model"], info


@when(parsers.parse('a client with an API key sends a drawn table to the "{model}" model through the gateway'))
def send_table_through_gateway(
    target: Target, client: httpx.Client, ctx: dict, evidence: ScenarioEvidence, model: str
) -> None:
    gateway = need(target, Gateway)
    host = need(target, Models).model_host(model)
    headers = {"Host": host, "x-api-key": gateway.api_keys()["team-a"], "X-Request-ID": f"table-through-{host}"}
    ctx.update(model=model, model_url=need(target, Models).model_url(model), page_size=TABLE.image.size)
    ctx["response"] = client.post(
        f"{gateway.gateway_url()}/predict", files={"file": ("table.png", samples.encode(TABLE.image))},
        headers=headers, timeout=60,
    )  # fmt: skip
    evidence.record("gateway_table", {"host": host, "status": ctx["response"].status_code,
                                      "request_id": ctx["response"].headers.get("x-request-id")})  # fmt: skip


@then("the answer is the table as drawn, as HTML and as cells")
def table_as_drawn(ctx: dict, evidence: ScenarioEvidence) -> None:
    body = ctx["response"].json()
    evidence.record("table_answer", {"html": body.get("html"), "expected": TABLE.html, "cells": body.get("cells")})
    assert body["html"] == TABLE.html, (body["html"], TABLE.html)
    assert (body["rows"], body["columns"]) == (TABLE.rows, TABLE.columns), body
    cells = [(c["row"], c["col"], c["rowspan"], c["colspan"], c["text"]) for c in body["cells"]]
    assert cells == [(c.row, c.col, c.rowspan, c.colspan, c.text) for c in TABLE.cells], cells
    width, height = ctx["page_size"]
    for c in body["cells"]:
        assert 0 <= c["x1"] < c["x2"] <= width and 0 <= c["y1"] < c["y2"] <= height, c
    assert "regions" not in body and "boxes" not in body, body


@when(parsers.parse('a client sends a document page to the "{model}" model over the Open Inference Protocol'))
def send_page_oip(target: Target, client: httpx.Client, ctx: dict, evidence: ScenarioEvidence, model: str) -> None:
    url = need(target, Models).model_url(model)
    name = model_info(client, url)["name"]
    metadata = client.get(f"{url}/v2/models/{name}")
    assert metadata.status_code == 200, metadata.text
    image = samples.encode(page_for(model))
    request = {
        "id": f"page-for-{model}",
        "inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "data": [base64.b64encode(image).decode()]}],
    }
    ctx.update(model=model, model_url=url, metadata=metadata.json())
    ctx["response"] = client.post(f"{url}/v2/models/{name}/infer", json=request)
    evidence.record(
        "oip",
        {"model": model, "metadata": metadata.json(), "status": ctx["response"].status_code, "id": request["id"]},
    )


@then(parsers.parse('the inference answer names the model "{name}" with the version and digest its /metrics shows'))
def oip_names_model(client: httpx.Client, ctx: dict, evidence: ScenarioEvidence, name: str) -> None:
    body: dict[str, Any] = ctx["response"].json()
    info = model_info(client, ctx["model_url"])
    named = {"model_name": body["model_name"], "model_version": body["model_version"], **body.get("parameters", {})}
    evidence.record("oip_identity", {"response": named, "metrics": info})
    assert body["model_name"] == info["name"] == name, (named, info)
    assert body["model_version"] == info["version"], (named, info)
    assert body["parameters"]["model_digest"] == info["digest"], (named, info)
    assert ctx["metadata"]["versions"] == [info["version"]], ctx["metadata"]


@then("the inference answer carries every output its metadata lists, and no other")
def oip_outputs(ctx: dict, evidence: ScenarioEvidence) -> None:
    body = ctx["response"].json()
    declared = {o["name"]: o["datatype"] for o in ctx["metadata"]["outputs"]}
    answered = {o["name"]: o["datatype"] for o in body["outputs"]}
    evidence.record("oip_outputs", {"declared": declared, "answered": answered})
    assert answered == declared
    for output in body["outputs"]:
        size = 1
        for d in output["shape"]:
            size *= d
        assert len(output["data"]) == size, output
