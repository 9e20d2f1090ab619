"""Run under .venv-kserve (KServe's Python SDK), not the project's venv: KServe's REST client against a
running service. ``python kserve_client.py URL MODEL IMAGE`` prints one JSON object of what it saw.

Readiness (server live and ready, model ready) and inference through ``InferenceRESTClient`` (protocol
v2), with the image as a BYTES input both ways the client sends one: base64 text in JSON, and raw bytes by
the binary data extension. The client has no metadata call: the model's metadata is fetched with the
client's own HTTP client and validated by KServe's data model of it (``ModelMetadataResponse``).
"""

from __future__ import annotations

import asyncio
import base64
import json
import sys
from pathlib import Path

import numpy as np
from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig
from kserve.protocol.rest.v2_datamodels import ModelMetadataResponse


def outputs(response: object) -> dict[str, object]:
    return {
        o.name: {"shape": list(o.shape), "datatype": o.datatype, "data": o.as_numpy().tolist()}
        for o in response.outputs
    }  # type: ignore[attr-defined]


def decoded(value: object) -> object:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, list):
        return [decoded(v) for v in value]
    return value


async def main(url: str, model: str, image_path: str) -> dict[str, object]:
    image = Path(image_path).read_bytes()
    client = InferenceRESTClient(RESTConfig(protocol="v2", timeout=60, retries=0))
    seen: dict[str, object] = {}
    try:
        seen["server_live"] = await client.is_server_live(url)
        seen["server_ready"] = await client.is_server_ready(url)
        seen["model_ready"] = await client.is_model_ready(url, model)
        seen["other_model_ready"] = await client.is_model_ready(url, model + "-absent")
        metadata = (await client._client.get(f"{url}/v2/models/{model}")).raise_for_status().json()
        seen["metadata"] = ModelMetadataResponse.model_validate(metadata).model_dump()

        as_text = InferInput("image", [1], "BYTES")
        as_text.set_data_from_numpy(np.array([base64.b64encode(image).decode()], dtype=object), binary_data=False)
        response = await client.infer(url, InferRequest(model, [as_text], request_id="kserve-json"), model_name=model)
        seen["json"] = {"id": response.id, "model_name": response.model_name, "outputs": decoded(outputs(response))}

        as_bytes = InferInput("image", [1], "BYTES")
        as_bytes.set_data_from_numpy(np.array([image], dtype=object), binary_data=True)
        response = await client.infer(
            url, InferRequest(model, [as_bytes], request_id="kserve-binary"), model_name=model
        )
        seen["binary"] = {"id": response.id, "model_name": response.model_name, "outputs": decoded(outputs(response))}
    finally:
        await client.close()
    return seen


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(*sys.argv[1:4])), default=str))
