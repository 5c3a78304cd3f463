"""Server-wide turns for interim decodes: how many run at once, keyed to the engine's load, and whose is next.

Each stream asks for a turn when it has enough new speech for a decode (the interim step). A turn is granted at
once while fewer than `limit` decodes run and the engine has no urgent work waiting (finals, the segments they
join); the first turn is granted whatever the load, so word results never stop. Otherwise the stream waits, and
turns go to waiting streams in the order they asked (the stream whose words are oldest first). The stream reads
its audio when its turn starts, not when it asked, so a decode always hears the latest speech.

Keyed to the load rather than to the number of open streams: with a cheap engine many streams decode often;
with an expensive one decodes take turns on the CPU the finals leave free.
"""
from __future__ import annotations

import logging
from collections.abc import Callable

log = logging.getLogger(__name__)


class InterimTurns:
    def __init__(self, limit: int, busy: Callable[[], bool] = lambda: False) -> None:
        """`limit`: decodes at once (0: no limit, every request starts at once); `busy()`: the engine has urgent
        work waiting, so no turn beyond the first is granted."""
        self.limit = limit
        self._busy = busy
        self.running = 0
        self._waiting: dict[object, Callable[[], bool]] = {}  # insertion order is the order they asked

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def request(self, key: object, start: Callable[[], bool]) -> None:
        """Asks for a turn for `key` (a stream); `start()` runs when it is granted and returns True if it
        started a decode, which then holds the turn until `release()`. Asking again while waiting keeps the
        place in the queue."""
        if key not in self._waiting:
            self._waiting[key] = start
        self._grant()  # also when already waiting: the engine may have stopped being busy

    def withdraw(self, key: object) -> None:
        """The stream no longer wants a turn (its utterance ended, or the stream did)."""
        self._waiting.pop(key, None)

    def release(self) -> None:
        """A decode that held a turn is over."""
        self.running = max(0, self.running - 1)
        self._grant()

    def _may_start(self) -> bool:
        if not self.limit:
            return True
        if self.running >= self.limit:
            return False
        return self.running == 0 or not self._busy()

    def _grant(self) -> None:
        while self._waiting and self._may_start():
            key = next(iter(self._waiting))
            start = self._waiting.pop(key)
            self.running += 1
            try:
                started = start()
            except Exception:  # a stream's failure must not stop the others' turns
                log.exception("interim decode failed to start")
                started = False
            if not started:
                self.running -= 1
