"""The peer of bench/throughput_bench.py: KServe's own ``ModelServer`` serving the service's model.

Run with the bench-only venv (``.venv-peer``, from ``bench/peer_requirements.txt``: kserve 0.20.0, the SDK of
the KServe release the platform runs), never with the project's: ``python bench/peer_server.py --http_port P
[--workers N] [--threads T]``. The model is the service's own (``service.startup.load_model``: the same
files, detector and recogniser settings), decoded by the service's decoder at the same pixel limit, behind
KServe's v1 protocol: ``POST /v1/models/ocr:predict`` with ``{"instances": [{"image": {"b64": ...}}]}``,
KServe's convention for binary inputs. ``predict`` is a plain method, as in KServe's custom-model example:
the model server runs it on its event loop, one request at a time per worker process.

``--workers N`` (N > 1) is KServe's multi-process mode: uvicorn worker processes started by ``spawn``, each
unpickling the model; the model then loads in each worker (``__setstate__``) and not in the parent, which
only supervises (the least memory this mode can take). The benchmark warms every worker up before it
measures. Every other option is the model server's default.
"""

from __future__ import annotations

import argparse
import base64
import sys
import threading
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import kserve

from service.images import decode_image
from service.settings import load_settings
from service.startup import load_model


class OcrPeer(kserve.Model):
    def __init__(self, name: str, threads: int, *, load_now: bool) -> None:
        super().__init__(name)
        self.threads = threads
        self.engine: Any = None
        self.max_pixels = 0
        if load_now:
            self.load()
        else:
            self.ready = True  # each worker process loads its own copy as it starts

    def load(self) -> bool:
        settings = load_settings(max_concurrency=1, intra_op_threads=self.threads, log_level="warning")
        self.max_pixels = settings.max_pixels
        self.engine = load_model(settings).model
        self.ready = True
        return True

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "engine": None, "_loading": None}

    def __setstate__(self, state: dict[str, Any]) -> None:
        # In a worker process. Loading here, before the worker answers its parent's pings, would get it
        # killed as hung (the parent waits 5 s): load beside them, and let the first request wait for it.
        self.__dict__.update(state)
        self._loading = threading.Thread(target=self.load, name="load")
        self._loading.start()

    def predict(self, payload: dict, headers: dict[str, str] | None = None) -> dict:  # type: ignore[override]
        if getattr(self, "_loading", None) is not None:
            self._loading.join()
        predictions = []
        for instance in payload["instances"]:
            image = decode_image(base64.b64decode(instance["image"]["b64"]), max_pixels=self.max_pixels)
            result = self.engine.read(image)
            predictions.append(
                {
                    "text": result.text,
                    "confidence": result.confidence,
                    "boxes": [{"box": [b.x1, b.y1, b.x2, b.y2], "text": b.text, "conf": b.conf} for b in result.boxes],
                }
            )
        return {"predictions": predictions}


def main() -> None:
    # ModelServer reads its own options (--http_port, --grpc_port, --workers, ...) from sys.argv.
    parser = argparse.ArgumentParser(parents=[kserve.model_server.parser])
    parser.add_argument("--threads", type=int, default=0, help="intra-op threads; 0: the service's rule")
    args, _ = parser.parse_known_args()
    model = OcrPeer("ocr", args.threads, load_now=args.workers <= 1)
    kserve.ModelServer().start([model])


if __name__ == "__main__":
    main()
