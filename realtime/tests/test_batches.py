"""realtime/batches.py: questions asked together are answered by one call, in order."""

import asyncio
import itertools
import time
from typing import Any

import pytest

from realtime import batches

# (The calls run through channels' database_sync_to_async, which tidies connections.)
pytestmark = pytest.mark.django_db


def doubled(questions: list[int]) -> list[int]:
    calls.append((time.monotonic(), list(questions)))
    return [2 * q for q in questions]


calls: list[tuple[float, list[int]]] = []


async def stream(answer: Any, questions: int, **pace: float) -> list[int]:
    """Ask `answer` the questions 0, 1, ... one every 0.05 s; their answers."""
    asked = []
    for q in range(questions):
        asked.append(asyncio.ensure_future(batches.ask(answer, q, **pace)))
        await asyncio.sleep(0.05)
    return list(await asyncio.gather(*asked))


async def test_questions_asked_while_a_call_runs_go_in_the_next_call_in_order():
    calls.clear()
    answers = await asyncio.gather(*(batches.ask(doubled, q) for q in range(10)))
    assert answers == [2 * q for q in range(10)]
    assert [q for _, asked in calls for q in asked] == list(range(10))
    assert len(calls) <= 2  # (the first may go alone; everything else waits for the next)


async def test_a_lone_question_is_answered_at_once_and_a_stream_at_most_every_so_often():
    calls.clear()
    start = time.monotonic()
    assert await batches.ask(doubled, 1, every=1.0) == 2
    assert time.monotonic() - start < 0.5  # (not kept waiting for a batch to fill)
    await asyncio.sleep(0.05)  # a quiet spell

    calls.clear()
    assert await stream(doubled, 30, every=1.0) == [2 * q for q in range(30)]
    starts = [at for at, _ in calls]
    assert 2 <= len(calls) <= 3, calls  # 1.5 s of questions, a call a second at most
    assert all(b - a >= 0.99 for a, b in itertools.pairwise(starts))


async def test_a_failed_call_fails_each_of_its_questions_and_the_next_call_goes_on():
    def fails_on_three(questions: list[int]) -> list[int]:
        if 3 in questions:
            raise ValueError("three")
        return questions

    results = await asyncio.gather(
        *(batches.ask(fails_on_three, q) for q in (1, 2, 3)), return_exceptions=True
    )
    assert any(isinstance(r, ValueError) for r in results)
    assert await batches.ask(fails_on_three, 4) == 4


def slow_doubled(questions: list[int]) -> list[int]:
    time.sleep(0.1)  # (a call that works 0.1 s in its thread)
    return doubled(questions)


async def test_calls_that_work_longer_come_further_apart_to_keep_their_share():
    calls.clear()
    start = time.monotonic()
    assert await batches.ask(slow_doubled, 1, share=0.25) == 2
    assert time.monotonic() - start < 0.5  # the first of a quiet spell goes at once

    calls.clear()
    assert await stream(slow_doubled, 24, share=0.25) == [2 * q for q in range(24)]
    # 1.2 s of questions: a call works 0.1 s, so they start 0.4 s apart, not back to back
    # (which would be every 0.1 s, about a dozen calls).
    starts = [at for at, _ in calls]
    assert 3 <= len(calls) <= 5, calls
    assert all(b - a >= 0.39 for a, b in itertools.pairwise(starts))


async def test_a_share_outside_0_to_1_is_refused():
    for share in (0, -1, 1.5):
        with pytest.raises(ValueError, match="share"):
            await batches.ask(doubled, 1, share=share)
