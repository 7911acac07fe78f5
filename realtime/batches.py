"""Sync database work asked by many sockets at once, answered in one trip per burst.

A connect storm (a deploy: every page reconnects) asks the same few questions of the
database for every socket: whose session is this, may they enter, where is their page.
Asked one socket at a time, each question is a trip to the database thread (which every
socket shares) and a query or three, so a storm of N connects costs N trips and 3N
queries. `ask` hands a question to a batch instead: the questions asked while a call
runs are answered together by the next one, by a function that takes them all and
answers each (in the order asked). There is no waiting for a batch to fill: an idle
server answers a lone question at once. Under a storm a batch may be asked to wait until
`every` seconds after the previous one started (`ask(..., every=)`), and to take at most
a `share` of the time (`ask(..., share=)`: after a call that worked d seconds, the next
starts d / share after it at the soonest), so that what each call shares is shared by
more (rooms/entering.py: a room's online list), the more so the dearer it gets.
"""

import asyncio
import time
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from channels.db import database_sync_to_async

Question = TypeVar("Question")
Answer = TypeVar("Answer")


class _Batches(Generic[Question, Answer]):
    """The questions of one event loop waiting for `answer`, and the task answering them:
    everything asked while a call runs goes in the next call."""

    def __init__(self, answer: Callable[[list[Question]], list[Answer]]) -> None:
        self.answer = answer
        self.every = 0.0
        self.share = 1.0
        self.next_at = float("-inf")  # (loop time before which the next call waits)
        self.waiting: list[tuple[Question, asyncio.Future[Answer]]] = []
        self.task: asyncio.Task[None] | None = None

    async def ask(self, question: Question) -> Answer:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Answer] = loop.create_future()
        self.waiting.append((question, future))
        if self.task is None or self.task.done():
            self.task = loop.create_task(self._run(), name=f"batches of {self.answer.__name__}")
        return await future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while self.waiting:
            # (The first question after a quiet spell goes at once.)
            await asyncio.sleep(max(0.0, self.next_at - loop.time()))
            started = loop.time()
            batch, self.waiting = self.waiting, []
            try:
                answers, worked = await database_sync_to_async(self._timed)([q for q, _ in batch])
            except Exception as error:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(error)
                self.next_at = started + self.every
                continue
            self.next_at = started + max(self.every, worked / self.share)
            for (_, future), answer in zip(batch, answers, strict=True):
                if not future.done():  # (its connect may have been cancelled)
                    future.set_result(answer)

    def _timed(self, questions: list[Question]) -> tuple[list[Answer], float]:
        """The answers, and the seconds the call worked (in its thread: not the time it
        waited there behind other calls)."""
        start = time.perf_counter()
        answers = self.answer(questions)
        return answers, time.perf_counter() - start


_batches: dict[tuple[asyncio.AbstractEventLoop, Callable[..., Any]], _Batches[Any, Any]] = {}


async def ask(
    answer: Callable[[list[Question]], list[Answer]],
    question: Question,
    *,
    every: float = 0.0,
    share: float = 1.0,
) -> Answer:
    """`answer([question, ...])[i]` for this question, computed in the database thread
    together with every question asked of `answer` meanwhile. `answer` must answer each
    question as if it were asked alone, and in order. While questions keep coming, calls
    start at most once every `every` seconds, and take at most `share` of the time (the
    first of a quiet spell goes at once)."""
    if not 0 < share <= 1:
        raise ValueError(f"share must be in (0, 1], not {share}")
    key = (asyncio.get_running_loop(), answer)
    if key not in _batches:
        _batches[key] = _Batches(answer)
    batches: _Batches[Question, Answer] = _batches[key]
    batches.every, batches.share = every, share
    return await batches.ask(question)


def reset() -> None:
    """Forget the loop-bound batches (tests: each has its own event loop)."""
    _batches.clear()
