"""Admission to the model: bounded concurrency, a bounded waiting line, and a deadline per request.

Past ``concurrency + queue`` admitted requests the next one is refused at once (503 + Retry-After)
instead of waiting without bound. A request whose deadline passes answers 504, but its slot stays
taken until the model thread really finishes: onnxruntime cannot be interrupted, and pretending
otherwise would let the machine oversubscribe.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from service.errors import InferenceTimeout, Overloaded, ShuttingDown

T = TypeVar("T")


class InferenceGate:
    def __init__(self, concurrency: int, queue: int) -> None:
        if concurrency < 1 or queue < 0:
            raise ValueError("concurrency must be >= 1 and queue >= 0")
        self.concurrency = concurrency
        self.capacity = concurrency + queue
        self._executor = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="inference")
        self._slots = asyncio.Semaphore(concurrency)
        self._admitted = 0
        self._closed = False
        self._mean_s = 0.5  # running estimate of one inference, for Retry-After

    @property
    def admitted(self) -> int:
        """Requests running or waiting for the model."""
        return self._admitted

    def retry_after_s(self) -> int:
        waves = math.ceil(self._admitted / self.concurrency)
        return max(1, math.ceil(waves * self._mean_s))

    async def run(self, fn: Callable[[], T], *, timeout: float) -> T:
        if self._closed:
            raise ShuttingDown("the service is shutting down")
        if self._admitted >= self.capacity:
            raise Overloaded(
                f"{self._admitted} requests are already running or waiting (limit {self.capacity})",
                retry_after_s=self.retry_after_s(),
            )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        self._admitted += 1
        try:
            await asyncio.wait_for(self._slots.acquire(), timeout)
        except TimeoutError as exc:
            self._admitted -= 1
            raise InferenceTimeout(f"no model slot became free within {timeout:g}s") from exc
        except BaseException:
            self._admitted -= 1
            raise
        started = loop.time()
        future = loop.run_in_executor(self._executor, fn)

        def release(_: object) -> None:
            self._mean_s = 0.8 * self._mean_s + 0.2 * (loop.time() - started)
            self._slots.release()
            self._admitted -= 1

        future.add_done_callback(release)
        try:
            return await asyncio.wait_for(asyncio.shield(future), max(deadline - loop.time(), 0.001))
        except TimeoutError as exc:
            raise InferenceTimeout(f"inference did not finish within {timeout:g}s") from exc

    def close(self) -> None:
        """Refuse new work; work already admitted finishes."""
        self._closed = True
        self._executor.shutdown(wait=False)
