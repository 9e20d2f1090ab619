"""Admission and memory: bounded work at once, a bounded waiting line, a deadline per request, and the
memory budget the pixel limit is derived from.

**Admission.** A request is admitted (:meth:`InferenceGate.admit`) *before* its upload is read: past
``concurrency + queue`` admitted requests the next one is refused at once (503 + Retry-After) without
reading a byte of its body, so the uploads held at once are bounded. An admitted request then runs its
work in one of ``concurrency`` slots (:meth:`Ticket.run`, on the gate's own threads) within its deadline.
A request whose deadline passes answers 504, but its place stays taken until the thread really finishes:
onnxruntime and the decoders cannot be interrupted, and pretending otherwise would let the machine
oversubscribe. /predict and /jobs each have a gate.

**Defaults by measurement.** :func:`default_concurrency` and :func:`default_threads` are what
``OCR_MAX_CONCURRENCY=0`` and ``OCR_INTRA_OP_THREADS=0`` (the defaults) resolve to, from the CPUs the process
may use (``service.cgroup.available_cpus``). Measured (docs/benchmarks.md: ``bench/throughput_bench.py``):
one inference scales poorly over intra-op threads, so at 2 CPUs two inferences of one thread each read more
pages than one inference of two threads (the raw model 1.4x, the service 1.2x in one run) and a small image
alone is no slower; at 1 CPU a second inference adds memory and latency, not pages. Beyond 2 CPUs nothing
was measured, so the rule goes no further than 2 inferences at once and gives the other CPUs to their threads.

**Memory.** :class:`MemoryBudget` splits the container's memory limit into what the process needs
whatever it is sent (interpreter, model, one inference's working set per model slot), what admitted
uploads hold, and what is left for decoding: at most two decodes per model slot at once (one /predict,
one /jobs validation). The pixel limit is what one decode may use, at the decoder cost of the widest
common format (``service.images.DECODE_BYTES_PER_PIXEL``). The figures are measured (docs/benchmarks.md).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TypeVar

from service import allocator
from service.errors import InferenceTimeout, Overloaded, ShuttingDown

T = TypeVar("T")
MIB = 1024 * 1024
MAX_DEFAULT_CONCURRENCY = 2  # the most inferences at once that a measurement supports as a default


def default_concurrency(cpus: int) -> int:
    """Inferences at once for ``cpus`` CPUs, before the memory budget has its say: one a CPU, up to 2."""
    return max(1, min(cpus, MAX_DEFAULT_CONCURRENCY))


def default_threads(cpus: int, concurrency: int) -> int:
    """onnxruntime intra-op threads per inference: the CPUs shared among the inferences, at least 1."""
    return max(1, cpus // max(concurrency, 1))


class Ticket:
    """One admitted request: its place in the gate, held until the request and its thread are done."""

    def __init__(self, gate: InferenceGate) -> None:
        self._gate = gate
        self._threads = 0
        self._left = False
        self._released = False
        self._on_release: list[Callable[[], object]] = []

    def on_release(self, callback: Callable[[], object]) -> None:
        """Call ``callback`` (on the event loop) once the request is done and no thread of it runs."""
        self._on_release.append(callback)

    async def run(self, fn: Callable[[], T], *, timeout: float) -> T:
        """Run ``fn`` in a slot of the gate, within ``timeout`` seconds (waiting for the slot included)."""
        return await self._gate._run(self, fn, timeout)

    def _leave(self) -> None:
        self._left = True
        self._maybe_release()

    def _thread_started(self) -> None:
        self._threads += 1

    def _thread_done(self) -> None:
        self._threads -= 1
        self._maybe_release()

    def _maybe_release(self) -> None:
        if self._left and self._threads == 0 and not self._released:
            self._released = True
            self._gate._admitted -= 1
            for callback in self._on_release:
                callback()


class InferenceGate:
    def __init__(self, concurrency: int, queue: int, *, name: str = "inference") -> None:
        if concurrency < 1 or queue < 0:
            raise ValueError("concurrency must be >= 1 and queue >= 0")
        self.concurrency = concurrency
        self.capacity = concurrency + queue
        self._executor = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix=name)
        self._slots = asyncio.Semaphore(concurrency)
        self._admitted = 0
        self._closed = False
        self._mean_s = 0.5  # running estimate of one run, for Retry-After

    @property
    def admitted(self) -> int:
        """Requests admitted: reading their upload, waiting for a slot, or running."""
        return self._admitted

    def retry_after_s(self) -> int:
        waves = math.ceil(self._admitted / self.concurrency)
        return max(1, math.ceil(waves * self._mean_s))

    @asynccontextmanager
    async def admit(self) -> AsyncIterator[Ticket]:
        """A place for one request, or 503 at once (``Overloaded``, ``ShuttingDown``)."""
        if self._closed:
            raise ShuttingDown("the service is shutting down")
        if self._admitted >= self.capacity:
            raise Overloaded(
                f"{self._admitted} requests are already admitted (limit {self.capacity})",
                retry_after_s=self.retry_after_s(),
            )
        self._admitted += 1
        ticket = Ticket(self)
        try:
            yield ticket
        finally:
            ticket._leave()

    async def run(self, fn: Callable[[], T], *, timeout: float) -> T:
        """Admit, then run ``fn`` in a slot: for work with nothing to read first."""
        async with self.admit() as ticket:
            return await ticket.run(fn, timeout=timeout)

    async def _run(self, ticket: Ticket, fn: Callable[[], T], timeout: float) -> T:
        if self._closed:
            raise ShuttingDown("the service is shutting down")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            await asyncio.wait_for(self._slots.acquire(), timeout)
        except TimeoutError as exc:
            raise InferenceTimeout(f"no slot became free within {timeout:g}s") from exc
        started = loop.time()
        ticket._thread_started()
        try:
            future = loop.run_in_executor(self._executor, allocator.trimmed(fn))
        except BaseException:
            self._slots.release()
            ticket._thread_done()
            raise

        def release(_: object) -> None:
            self._mean_s = 0.8 * self._mean_s + 0.2 * (loop.time() - started)
            self._slots.release()
            ticket._thread_done()

        future.add_done_callback(release)
        try:
            return await asyncio.wait_for(asyncio.shield(future), max(deadline - loop.time(), 0.001))
        except TimeoutError as exc:
            raise InferenceTimeout(f"the work did not finish within {timeout:g}s") from exc

    def close(self) -> None:
        """Refuse new work; work already admitted finishes."""
        self._closed = True
        self._executor.shutdown(wait=False)


@dataclass(frozen=True)
class MemoryBudget:
    """How a memory limit is spent; every figure in MiB. See the module's docstring."""

    limit_mib: float
    concurrency: int
    queue: int
    max_upload_bytes: int
    headroom: float = 0.10  # of the limit, for what is not modelled (allocator slack, metrics, logs)
    process_mib: float = 256.0  # interpreter, libraries, the three ONNX sessions, warm (measured ~200)
    inference_mib: float = 192.0  # one inference on the pipeline's largest input, 2000x2000 (measured ~170)
    spooled_upload_mib: float = 1.0  # an admitted upload in memory; the rest of it spools to /tmp

    @property
    def admitted_uploads(self) -> int:
        """Uploads held at once: every place of the /predict and the /jobs gates."""
        return 2 * (self.concurrency + self.queue)

    @property
    def decoders(self) -> int:
        """Decodes at once: one per /predict slot and one per /jobs slot."""
        return 2 * self.concurrency

    def fixed_mib(self) -> float:
        """What the process holds whatever it is sent, and the uploads it may be holding."""
        uploads = self.admitted_uploads * self.spooled_upload_mib
        job_payloads = self.concurrency * self.max_upload_bytes / MIB  # bytes read to go to the job queue
        return self.process_mib + self.concurrency * self.inference_mib + uploads + job_payloads

    def per_decode_mib(self) -> float:
        """What one decode may use."""
        return (self.limit_mib * (1 - self.headroom) - self.fixed_mib()) / self.decoders

    def max_pixels(self, bytes_per_pixel: float) -> int:
        """The largest image one decode may take, at ``bytes_per_pixel``; 0 when nothing is left."""
        return max(0, int(self.per_decode_mib() * MIB / bytes_per_pixel))

    def explain(self) -> str:
        return (
            f"{self.limit_mib:g} MiB less {self.headroom:.0%} headroom, {self.process_mib:g} MiB for the process,"
            f" {self.inference_mib:g} MiB for each of {self.concurrency} model slot(s) and"
            f" {self.fixed_mib() - self.process_mib - self.concurrency * self.inference_mib:.0f} MiB for uploads"
            f" leaves {max(0.0, self.per_decode_mib()):.0f} MiB for each of {self.decoders} decodes at once"
        )
