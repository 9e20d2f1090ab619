"""Receiving an uploaded image: the multipart body, its ``file`` field, and the image header checks."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request
from PIL import Image
from starlette.datastructures import UploadFile

from service.errors import MissingField
from service.images import SUPPORTED_NAMES, inspect_image

FIELD = "file"

# The request body of /predict and /jobs as the OpenAPI document shows it: the routes read the body
# themselves (see receive_image), so FastAPI cannot derive it from their parameters.
OPENAPI_UPLOAD: dict[str, object] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": [FIELD],
                    "properties": {
                        FIELD: {
                            "type": "string",
                            "format": "binary",
                            "description": f"The image: {SUPPORTED_NAMES}",
                        }
                    },
                }
            }
        },
    }
}


@dataclass
class ReceivedImage:
    """An upload whose header passed the checks; its pixels are not decoded yet."""

    data: bytes
    image: Image.Image


async def receive_image(request: Request, *, max_pixels: int) -> ReceivedImage:
    """Read the multipart body, take its ``file`` field and check the image's header."""
    form = await request.form(max_files=1, max_fields=8)
    upload = form.get(FIELD)
    if not isinstance(upload, UploadFile):
        raise MissingField(f"{FIELD}: Field required (a multipart/form-data body with the image in the field {FIELD})")
    data = await upload.read()
    await form.close()
    return ReceivedImage(data=data, image=inspect_image(data, max_pixels=max_pixels))
