"""Concurrent writes: the per-partition extraction lock never deadlocks, survives cancellation,
and serialises one partition across event loops (sync calls run on dualmem's own loop)."""

from __future__ import annotations

import asyncio
import json
import threading

import pytest

from dualmem import DualMemory
from dualmem._locks import KeyedLock
from dualmem.testing import ScriptedLLM, ScriptedReply

USERS = ["ana", "ben", "cy", "dee"]
FACT = json.dumps({"facts": [{"text": "A fact.", "turns": [1]}]})


def extracting_llm(delay: float = 0.0) -> ScriptedLLM:
    return ScriptedLLM(by_task={
        "extract": lambda r: ScriptedReply(FACT, delay=delay),
        "reconcile": lambda r: '{"actions": []}',
    })


@pytest.fixture
def memory(tmp_path):
    m = DualMemory(path=tmp_path, llm=extracting_llm(delay=0.01), extract=True, index_turns=False)
    yield m
    m.close()


async def test_the_issue_repro_of_eight_adds_for_one_user_finishes(memory) -> None:
    # awaited through asyncio.to_thread, the old thread lock took every executor worker
    adds = (memory.aadd(f"I own {i} plants.", user_id="maya", session_id="s") for i in range(8))
    results = await asyncio.wait_for(asyncio.gather(*adds), timeout=60)
    assert [r.error for r in results] == [None] * 8
    assert len(await memory.ahistory(user_id="maya")) == 8


async def test_64_concurrent_adds_with_cancellations_lose_nothing_and_leave_no_lock(memory) -> None:
    tasks = [
        asyncio.create_task(memory.aadd(f"note {i}", user_id=USERS[i % 4], session_id=f"s{i % 3}"))
        for i in range(64)
    ]
    await asyncio.sleep(0.05)  # some adds hold the lock, others wait for it
    cancelled = [t for i, t in enumerate(tasks) if i % 5 == 0 and not t.done()]
    for t in cancelled:
        t.cancel()
    await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), timeout=120)

    finished = [t.result() for t in tasks if not t.cancelled()]
    assert len(finished) >= 64 - len(cancelled)
    assert all(r.error is None for r in finished)
    for user in USERS:
        assert not memory._extracting.locked(f"user:{user}")
        stored = {t.id for t in await memory.ahistory(user_id=user)}
        mine = [r for r in finished if r.turns[0].user_id == user]
        assert {r.turns[0].id for r in mine} <= stored
        indexed = {turn_id for m in await memory.aget_all(user_id=user) for turn_id in m.source_turn_ids}
        assert {r.turns[0].id for r in mine} <= indexed
    follow_ups = (memory.aadd("one more", user_id=user) for user in USERS)
    assert all(r.error is None for r in await asyncio.wait_for(asyncio.gather(*follow_ups), 60))


async def test_other_users_search_while_one_user_has_many_adds_waiting(memory) -> None:
    await memory.aadd("Ben keeps bees.", user_id="ben")
    adds = [asyncio.create_task(memory.aadd(f"note {i}", user_id="ana")) for i in range(16)]
    hits = await asyncio.wait_for(memory.asearch("bees", user_id="ben"), timeout=30)
    assert hits and hits[0].text == "A fact."
    await asyncio.wait_for(asyncio.gather(*adds), timeout=60)


def test_one_partition_is_serialised_across_event_loops(tmp_path) -> None:
    llm = extracting_llm(delay=0.05)
    memory = DualMemory(path=tmp_path, llm=llm, extract=True, index_turns=False)

    def sync_adds() -> None:  # on dualmem's background loop
        for i in range(3):
            memory.add(f"sync note {i}", user_id="ana")

    async def async_adds() -> None:  # on this thread's own loop
        await asyncio.gather(*(memory.aadd(f"async note {i}", user_id="ana") for i in range(3)))

    thread = threading.Thread(target=sync_adds)
    thread.start()
    asyncio.run(async_adds())
    thread.join(timeout=60)
    assert not thread.is_alive()
    assert llm.max_concurrency_seen == 1
    assert len(memory.history(user_id="ana")) == 6
    memory.close()


async def test_a_waiter_cancelled_as_the_lock_is_handed_to_it_passes_it_on() -> None:
    lock = KeyedLock()
    order: list[str] = []

    async def take(name: str) -> None:
        async with lock.hold("p"):
            order.append(name)

    async with lock.hold("p"):
        first = asyncio.create_task(take("first"))
        second = asyncio.create_task(take("second"))
        await asyncio.sleep(0)  # both wait now
        first.cancel()  # cancelled, and then granted by the release below, before it runs
    await asyncio.wait_for(asyncio.gather(first, second, return_exceptions=True), timeout=5)
    assert first.cancelled() and order == ["second"]
    assert not lock.locked("p")


async def test_a_holder_cancelled_inside_releases() -> None:
    lock = KeyedLock()
    entered = asyncio.Event()

    async def hold_forever() -> None:
        async with lock.hold("p"):
            entered.set()
            await asyncio.Event().wait()

    task = asyncio.create_task(hold_forever())
    await entered.wait()
    task.cancel()
    async with asyncio.timeout(5), lock.hold("p"):
        assert lock.locked("p")
    assert not lock.locked("p")


def test_a_lock_left_held_by_a_closed_loop_is_taken_over() -> None:
    lock = KeyedLock()
    loop = asyncio.new_event_loop()
    loop.run_until_complete(lock._acquire("p"))  # never released: its task is gone
    loop.close()

    async def take() -> bool:
        async with lock.hold("p"):
            return True

    assert asyncio.run(asyncio.wait_for(take(), 5))
