"""The Open Inference Protocol (KServe V2, REST) beside the seed's contract: health, server and model
metadata, model readiness and inference, for the one model this process serves (``service.models``).

The image is one BYTES input tensor of shape ``[1]`` (its name is free; ``image`` by convention). Its one
element is the image file's bytes, carried either

- in JSON, base64-encoded (standard alphabet, padded): ``{"inputs": [{"name": "image", "shape": [1],
  "datatype": "BYTES", "data": ["iVBORw0..."]}]}``; or
- raw, by the protocol's binary data extension: the request body is the JSON inference header followed by
  the image's bytes, the header's length in ``Inference-Header-Content-Length``, and the input's
  ``parameters`` say ``{"binary_data_size": N}`` (N: the bytes of the image: 4 for its length prefix, as
  the extension frames a BYTES element, then the image, or the image alone).

Outputs are JSON (their names, datatypes and shapes are in the model's metadata); ``outputs`` in a request
picks a subset. Errors are the protocol's ``{"error": "<message>"}`` with the seed's statuses (400, 404,
408, 413, 415, 503, 504), counted and logged like those of ``/predict``: the same upload limit (of the whole
body, so a base64 image can be about 3/4 of ``OCR_MAX_UPLOAD_BYTES``), gate, pixel limit, deadline,
metrics and access log. Only a refusal made before the request reaches a route (a declared body over the
upload limit, a bad ``X-Tenant-ID``) keeps the seed's error shape.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import struct
import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError
from starlette.requests import ClientDisconnect

from service import __version__
from service.api.deps import get_gate, get_model, get_state
from service.api.routes.predict import infer_in_slot
from service.api.schemas import (
    OipInferRequest,
    OipInferResponse,
    OipLive,
    OipModelMetadata,
    OipModelReady,
    OipReady,
    OipServerMetadata,
    oip_error_responses,
)
from service.api.state import ServiceState
from service.errors import (
    BadRequest,
    ClientClosedRequest,
    ModelNotFound,
    ModelNotReady,
    ModelVersionNotFound,
    request_id_of,
)
from service.headers import ascii_int
from service.images import inspect_image, load_rgb
from service.limits import InferenceGate
from service.models import ServedModel

PREFIX = "/v2"
HEADER_LENGTH = "inference-header-content-length"
EXTENSIONS = ["binary_tensor_data"]
PLATFORM = "onnxruntime_onnx"
IMAGE_INPUT = {"name": "image", "datatype": "BYTES", "shape": [1]}

router = APIRouter(prefix=PREFIX, tags=["open inference protocol"])


def _served(state: ServiceState, name: str, version: str | None = None) -> ServedModel | None:
    """The model this process serves when ``name`` (and ``version``, if given) is its; 404 otherwise. None
    while it loads: its name is the settings' then."""
    model = state.model
    served_name = model.info.name if model is not None else state.settings.model_name
    if name != served_name:
        raise ModelNotFound(f"no model {name!r}: this server serves {served_name!r}")
    if version is not None and model is not None and version != model.info.version:
        raise ModelVersionNotFound(f"model {name!r} has no version {version!r}: it is {model.info.version!r}")
    return model


# -- health and metadata --------------------------------------------------------------------------


@router.get("/health/live", response_model=OipLive)
async def server_live() -> OipLive:
    """200 while the process can answer."""
    return OipLive(live=True)


@router.get("/health/ready", response_model=OipReady, responses={503: {"model": OipReady}})
async def server_ready(state: Annotated[ServiceState, Depends(get_state)]) -> JSONResponse:
    """200 once the model is loaded and warm; 503 before and after SIGTERM, as ``/readyz``."""
    return JSONResponse(OipReady(ready=state.ready).model_dump(), status_code=200 if state.ready else 503)


@router.get("", response_model=OipServerMetadata)
async def server_metadata() -> OipServerMetadata:
    return OipServerMetadata(name="ocr-platform", version=__version__, extensions=EXTENSIONS)


def _metadata(state: ServiceState, name: str, version: str | None) -> OipModelMetadata:
    model = _served(state, name, version)
    if model is None:
        raise ModelNotReady("the model is not loaded yet")
    return OipModelMetadata.model_validate(
        {
            "name": model.info.name,
            "versions": [model.info.version],
            "platform": PLATFORM,
            "inputs": [IMAGE_INPUT],
            "outputs": model.oip_outputs_metadata(),
        }
    )


@router.get("/models/{name}", response_model=OipModelMetadata, responses=oip_error_responses(404, 503))
async def model_metadata(name: str, state: Annotated[ServiceState, Depends(get_state)]) -> OipModelMetadata:
    """The model's name, version, input (the image, one BYTES element) and outputs."""
    return _metadata(state, name, None)


@router.get(
    "/models/{name}/versions/{version}",
    response_model=OipModelMetadata,
    responses=oip_error_responses(404, 503),
    include_in_schema=False,  # the same operation as the unversioned one
)
async def model_version_metadata(
    name: str, version: str, state: Annotated[ServiceState, Depends(get_state)]
) -> OipModelMetadata:
    return _metadata(state, name, version)


def _model_ready(state: ServiceState, name: str, version: str | None) -> JSONResponse:
    model = _served(state, name, version)
    ready = model is not None and model.ready and not state.shutting_down
    return JSONResponse(OipModelReady(name=name, ready=ready).model_dump(), status_code=200 if ready else 503)


@router.get("/models/{name}/ready", response_model=OipModelReady, responses={**oip_error_responses(404), 503: {}})
async def model_ready(name: str, state: Annotated[ServiceState, Depends(get_state)]) -> JSONResponse:
    """200 and ``{"ready": true}`` once the model is warm; 503 and false before, and while draining."""
    return _model_ready(state, name, None)


@router.get(
    "/models/{name}/versions/{version}/ready",
    response_model=OipModelReady,
    responses={**oip_error_responses(404), 503: {}},
    include_in_schema=False,  # the same operation as the unversioned one
)
async def model_version_ready(
    name: str, version: str, state: Annotated[ServiceState, Depends(get_state)]
) -> JSONResponse:
    return _model_ready(state, name, version)


# -- inference ------------------------------------------------------------------------------------


def parse_infer(body: bytes, header_length: str | None) -> tuple[OipInferRequest, bytes]:
    """The inference request and the image's bytes, from a JSON body or one framed by the binary data
    extension (blocking: base64 and JSON of megabytes; call it off the event loop)."""
    binary = b""
    if header_length is not None:
        length = ascii_int(header_length)
        if length is None or length > len(body):
            raise BadRequest(f"Inference-Header-Content-Length {header_length!r} does not fit the body")
        body, binary = body[:length], body[length:]
    try:
        request = OipInferRequest.model_validate_json(body)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors(include_url=False)
        )
        raise BadRequest(f"not an inference request: {problems}") from None
    if len(request.inputs) != 1:
        raise BadRequest(f"expected one input (the image, BYTES, shape [1]), got {len(request.inputs)}")
    tensor = request.inputs[0]
    if tensor.datatype != "BYTES":
        raise BadRequest(f"input {tensor.name!r}: datatype must be BYTES (the image file), not {tensor.datatype}")
    if tensor.shape != [1]:
        shown = tensor.shape if len(tensor.shape) <= 8 else f"{tensor.shape[:8]} ... ({len(tensor.shape)} dimensions)"
        raise BadRequest(f"input {tensor.name!r}: shape must be [1] (one image), not {shown}")
    size = (tensor.parameters or {}).get("binary_data_size")
    if size is not None:
        # A bool is an int to Python: true is not a size.
        if type(size) is not int or size != len(binary):
            raise BadRequest(f"input {tensor.name!r}: binary_data_size {size!r} is not the {len(binary)} bytes sent")
        # The extension frames each BYTES element with its length (4 bytes, little-endian): strip it.
        if len(binary) >= 4 and struct.unpack("<I", binary[:4])[0] == len(binary) - 4:
            binary = binary[4:]
        return request, binary
    data = tensor.data
    # Shape [1] holds one element: a flat list of one string, never a nested one.
    if not isinstance(data, list) or len(data) != 1 or not isinstance(data[0], str):
        raise BadRequest(f"input {tensor.name!r}: data must be a list of one base64 string (the image file)")
    try:
        return request, base64.b64decode(data[0], validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest(f"input {tensor.name!r}: its element is not base64 (standard alphabet, padded)") from None


async def _read_body(request: Request) -> bytes:
    try:
        return await request.body()
    except ClientDisconnect as exc:
        raise ClientClosedRequest("the client closed the connection before its request arrived") from exc


async def _infer(request: Request, name: str, version: str | None, model: ServedModel, gate: InferenceGate) -> Any:

    state: ServiceState = request.app.state.service
    _served(state, name, version)
    start = time.perf_counter()
    settings = state.settings
    async with gate.admit() as ticket:
        body = await _read_body(request)
        infer_request, image = await asyncio.to_thread(parse_infer, body, request.headers.get(HEADER_LENGTH))
        del body
        inspected = await asyncio.to_thread(inspect_image, image, max_pixels=settings.max_pixels)
        result = await ticket.run(
            lambda: infer_in_slot(lambda: load_rgb(inspected), model, state), timeout=settings.request_timeout_s
        )
    outputs = model.oip_outputs(result)
    wanted = [o.name for o in infer_request.outputs or []]
    if wanted:
        known = {str(o["name"]) for o in outputs}
        if unknown := [w for w in wanted if w not in known]:
            raise BadRequest(f"unknown outputs {unknown}: the model has {sorted(known)}")
        outputs = [o for o in outputs if o["name"] in wanted]
    request_id = request_id_of(request)
    response = OipInferResponse.model_validate(
        {
            "model_name": model.info.name,
            "model_version": model.info.version,
            "id": infer_request.id if infer_request.id is not None else request_id,
            "parameters": {
                "request_id": request_id,
                "latency_ms": round((time.perf_counter() - start) * 1000, 2),
                "model_digest": model.info.digest,
            },
            "outputs": outputs,
        }
    )
    return Response(response.model_dump_json(exclude_none=True), media_type="application/json")


# The request body as the OpenAPI document shows it: the route reads the body itself, after admission.
INFER_BODY: dict[str, object] = {
    "requestBody": {
        "required": True,
        "description": "An inference request; the binary data extension's framing is accepted too",
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["inputs"],
                    "properties": {
                        "id": {"type": "string"},
                        "inputs": {
                            "type": "array",
                            "minItems": 1,
                            "maxItems": 1,
                            "items": {
                                "type": "object",
                                "required": ["name", "shape", "datatype"],
                                "properties": {
                                    "name": {"type": "string"},
                                    "shape": {"type": "array", "items": {"type": "integer"}},
                                    "datatype": {"type": "string", "enum": ["BYTES"]},
                                    "data": {
                                        "type": "array",
                                        "items": {"type": "string", "description": "the image file, base64"},
                                    },
                                },
                            },
                        },
                        "outputs": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["name"],
                                "properties": {"name": {"type": "string"}},
                            },
                        },
                    },
                }
            }
        },
    }
}


@router.post(
    "/models/{name}/infer",
    response_model=OipInferResponse,
    responses=oip_error_responses(400, 404, 408, 413, 415, 503, 504),
    openapi_extra=INFER_BODY,
)
async def infer(
    name: str,
    request: Request,
    model: Annotated[ServedModel, Depends(get_model)],
    gate: Annotated[InferenceGate, Depends(get_gate)],
) -> Any:
    """Run the model on one image (a BYTES input, base64 in JSON or raw by the binary data extension)."""
    return await _infer(request, name, None, model, gate)


@router.post(
    "/models/{name}/versions/{version}/infer",
    response_model=OipInferResponse,
    responses=oip_error_responses(400, 404, 408, 413, 415, 503, 504),
    openapi_extra=INFER_BODY,
    include_in_schema=False,  # the same operation as the unversioned one
)
async def infer_version(
    name: str,
    version: str,
    request: Request,
    model: Annotated[ServedModel, Depends(get_model)],
    gate: Annotated[InferenceGate, Depends(get_gate)],
) -> Any:
    return await _infer(request, name, version, model, gate)


# -- the protocol's error shape -------------------------------------------------------------------


def install_error_shape(app: FastAPI) -> None:
    """Under ``/v2``, errors answer ``{"error": "<message>"}`` (the protocol's shape) with the status, headers,
    metrics and log line the service's handlers give them; elsewhere they keep the seed's shape."""
    for kind, handler in list(app.exception_handlers.items()):
        app.add_exception_handler(kind, _reshaping(handler))


def _reshaping(handler: Any) -> Any:
    async def reshaped(request: Request, exc: Exception) -> Response:
        response: Response = await handler(request, exc)
        if not request.url.path.startswith(PREFIX):
            return response
        try:
            detail = json.loads(bytes(response.body))["error"]
        except (ValueError, KeyError, TypeError):
            return response
        message = detail.get("message", "") if isinstance(detail, dict) else str(detail)
        skip = ("content-length", "content-type")
        headers = {k: v for k, v in response.headers.items() if k.lower() not in skip}
        return JSONResponse({"error": message}, status_code=response.status_code, headers=headers)

    return reshaped
