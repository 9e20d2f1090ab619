"""Models as plugins: every model the service can serve, behind one interface, chosen by ``OCR_MODEL``.

A plugin is a class with:

- ``kind`` (the ``OCR_MODEL`` value that selects it) and, once made, ``info`` (``service.models.ocr.ModelInfo``:
  name, version, digest of its files) and ``threads`` (onnxruntime threads per inference);
- ``check_files(settings)``: its files exist (``ModelLoadError`` if not), before a port opens;
- ``from_settings(settings)``: loaded as the settings describe it, from the files inside its wheel or from
  ``OCR_MODEL_DIR``; nothing is ever downloaded;
- ``warm_up()`` (one inference; ``ready`` after it), ``predict(image)`` (an RGB PIL image, from worker
  threads) and ``response(result, request_id=, latency_ms=)``: the ``POST /predict`` answer;
- ``oip_outputs_metadata()`` and ``oip_outputs(result)``: its output tensors in the Open Inference Protocol.

``ocr`` (PP-OCR, the default) answers ``/predict`` with text and boxes; ``layout`` (PP-PicoDet CDLA)
with regions; ``table`` (SLANet-plus through rapid-table, its cells
read by the OCR pipeline) with the table as HTML and its cells. The job workers always run the OCR model:
the job path serves OCR only, and the layout and table services answer ``/jobs`` with 404
``jobs_not_served``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from service.models.layout import LayoutModel
from service.models.ocr import ModelInfo, OcrModel
from service.models.table import TableModel

if TYPE_CHECKING:
    from PIL import Image
    from pydantic import BaseModel

    from service.settings import ServiceSettings


class ServedModel(Protocol):
    kind: ClassVar[str]
    info: ModelInfo
    threads: int

    @property
    def ready(self) -> bool: ...

    def warm_up(self) -> float: ...

    def predict(self, image: Image.Image) -> Any: ...

    def response(self, result: Any, *, request_id: str, latency_ms: float) -> BaseModel: ...

    @staticmethod
    def oip_outputs_metadata() -> list[dict[str, object]]: ...

    @staticmethod
    def oip_outputs(result: Any) -> list[dict[str, object]]: ...


# The OCR and layout pipelines are the service's own (ppocr, picodet: their wheels' packages are never
# imported); the table model imports rapid_table's structure modules only when it is made.
PLUGINS: dict[str, Any] = {"ocr": lambda: OcrModel, "layout": lambda: LayoutModel, "table": lambda: TableModel}
KINDS = tuple(PLUGINS)


def plugin(kind: str) -> type[Any]:
    """The class of the model ``kind`` (``OCR_MODEL``)."""
    try:
        return PLUGINS[kind]()
    except KeyError:
        raise ValueError(f"no model {kind!r}: one of {', '.join(KINDS)}") from None


def check_files(settings: ServiceSettings) -> object:
    """The selected model's files, checked (``ModelLoadError`` naming the file if one is missing)."""
    return plugin(settings.model).check_files(settings)


def load(settings: ServiceSettings) -> ServedModel:
    """The selected model, loaded (not warmed)."""
    model: ServedModel = plugin(settings.model).from_settings(settings)
    return model
