"""The admission gate with real threads and a real event loop."""

import asyncio
import threading

import pytest

from service.errors import InferenceTimeout, Overloaded, ShuttingDown
from service.limits import InferenceGate, MemoryBudget


def test_capacity_is_concurrency_plus_queue() -> None:
    async def scenario() -> list[object]:
        gate = InferenceGate(concurrency=1, queue=1)
        release = threading.Event()
        first = asyncio.create_task(gate.run(release.wait, timeout=5))
        second = asyncio.create_task(gate.run(lambda: "queued", timeout=5))
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert gate.admitted == 2
        with pytest.raises(Overloaded) as info:
            await gate.run(lambda: "refused", timeout=5)
        assert int(info.value.headers["Retry-After"]) >= 1
        release.set()
        return [await first, await second]

    assert asyncio.run(scenario()) == [True, "queued"]


def test_timeout_keeps_the_slot_until_the_thread_finishes() -> None:
    async def scenario() -> None:
        gate = InferenceGate(concurrency=1, queue=0)
        release = threading.Event()
        with pytest.raises(InferenceTimeout):
            await gate.run(release.wait, timeout=0.05)
        assert gate.admitted == 1  # the thread still runs: no new work may start
        with pytest.raises(Overloaded):
            await gate.run(lambda: None, timeout=1)
        release.set()
        for _ in range(100):
            if gate.admitted == 0:
                break
            await asyncio.sleep(0.01)
        assert await gate.run(lambda: "free again", timeout=1) == "free again"

    asyncio.run(scenario())


def test_closed_gate_refuses() -> None:
    async def scenario() -> None:
        gate = InferenceGate(concurrency=1, queue=0)
        gate.close()
        with pytest.raises(ShuttingDown):
            await gate.run(lambda: None, timeout=1)

    asyncio.run(scenario())


def test_errors_from_the_model_propagate_and_free_the_slot() -> None:
    async def scenario() -> None:
        gate = InferenceGate(concurrency=1, queue=0)

        def boom() -> None:
            raise RuntimeError("model broke")

        with pytest.raises(RuntimeError, match="model broke"):
            await gate.run(boom, timeout=1)
        await asyncio.sleep(0.01)
        assert gate.admitted == 0

    asyncio.run(scenario())


def test_admission_is_refused_at_once_past_capacity_and_given_back() -> None:
    async def scenario() -> None:
        gate = InferenceGate(concurrency=1, queue=1)
        released: list[str] = []
        async with gate.admit() as first, gate.admit() as second:
            first.on_release(lambda: released.append("first"))
            assert gate.admitted == 2
            with pytest.raises(Overloaded):  # nothing waits: a third is refused before it reads anything
                async with gate.admit():
                    pass
            assert await second.run(lambda: "ran", timeout=1) == "ran"
        assert gate.admitted == 0 and released == ["first"]

    asyncio.run(scenario())


def test_an_admission_outlives_its_request_while_its_thread_runs() -> None:
    async def scenario() -> None:
        gate = InferenceGate(concurrency=1, queue=0)
        release = threading.Event()
        closed: list[bool] = []
        with pytest.raises(InferenceTimeout):
            async with gate.admit() as ticket:
                ticket.on_release(lambda: closed.append(True))
                await ticket.run(release.wait, timeout=0.05)
        assert gate.admitted == 1 and not closed  # the upload stays open while the thread may read it
        release.set()
        for _ in range(100):
            if gate.admitted == 0:
                break
            await asyncio.sleep(0.01)
        assert gate.admitted == 0 and closed == [True]

    asyncio.run(scenario())


def test_memory_budget_splits_the_limit() -> None:
    budget = MemoryBudget(limit_mib=1024, concurrency=1, queue=8, max_upload_bytes=10 * 1024 * 1024)
    assert budget.decoders == 2 and budget.admitted_uploads == 18
    spent = budget.fixed_mib() + budget.decoders * budget.per_decode_mib()
    assert spent == pytest.approx(1024 * (1 - budget.headroom))
    assert budget.max_pixels(5.5) == int(budget.per_decode_mib() * 2**20 / 5.5)
    crowded = MemoryBudget(limit_mib=1024, concurrency=4, queue=8, max_upload_bytes=10 * 1024 * 1024)
    assert crowded.max_pixels(5.5) == 0
