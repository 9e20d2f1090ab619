"""Receiving an uploaded image: admission first, then the body, then the header checks off the event loop.

:func:`admitted_image` is how /predict and /jobs take an upload:

1. the request is admitted by the route's gate (``service.limits``) or refused 503 at once, before a byte
   of its body is read: the uploads held at once are bounded by the gates' capacity;
2. the multipart body is read (the request context cuts it off past the upload limit, or when it stalls:
   413, 408); the file spools to disk past 1 MiB, so a waiting upload holds little memory;
3. the image's header is inspected in a thread, never on the event loop (a hostile header can take
   seconds to parse), and the upload is handed to the route with its admission ticket, whose ``run``
   decodes and reads it in one of the gate's slots.

The spooled file is closed when the ticket is released: when the request is answered and the slot's
thread (which may outlive a 504) is done.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from fastapi import Request
from starlette.datastructures import FormData, UploadFile
from starlette.requests import ClientDisconnect

from service.errors import ClientClosedRequest, MissingField
from service.images import SUPPORTED_NAMES, Inspected, inspect_image
from service.limits import InferenceGate, Ticket

FIELD = "file"
MAX_FIELDS = 8  # the file and a few text fields at most: a form of thousands is refused while it is read
MAX_TEXT_FIELD_BYTES = 64 * 1024

# The request body of /predict and /jobs as the OpenAPI document shows it: the routes read the body
# themselves (after admission), so FastAPI cannot derive it from their parameters.
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
class AdmittedImage:
    """An admitted upload whose header passed the checks; its pixels are not decoded yet."""

    ticket: Ticket
    inspected: Inspected
    file: UploadFile

    def read_bytes(self) -> bytes:
        """The whole upload (blocking: call it in the ticket's slot, as the job queue needs the bytes)."""
        source = self.file.file
        source.seek(0)
        return source.read()


async def _read_form(request: Request) -> FormData:
    try:
        return await request.form(max_files=1, max_fields=MAX_FIELDS, max_part_size=MAX_TEXT_FIELD_BYTES)
    except ClientDisconnect as exc:
        raise ClientClosedRequest("the client closed the connection before its upload arrived") from exc


def _close(form: FormData) -> None:
    for _, value in form.multi_items():
        if isinstance(value, UploadFile):
            value.file.close()


@asynccontextmanager
async def admitted_image(request: Request, gate: InferenceGate, *, max_pixels: int) -> AsyncIterator[AdmittedImage]:
    """Admit, read the body, inspect the image off the loop; see the module's docstring."""
    async with gate.admit() as ticket:
        form = await _read_form(request)
        ticket.on_release(lambda: _close(form))
        upload = form.get(FIELD)
        if not isinstance(upload, UploadFile):
            raise MissingField(
                f"{FIELD}: Field required (a multipart/form-data body with the image in the field {FIELD})"
            )
        inspected = await asyncio.to_thread(inspect_image, upload.file, max_pixels=max_pixels)
        yield AdmittedImage(ticket=ticket, inspected=inspected, file=upload)
