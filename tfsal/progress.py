"""Progress on stderr for long runs: a count with rate and ETA, shown once the work takes more
than a moment; tqdm draws it when installed (the `progress` extra), plain lines otherwise."""

from __future__ import annotations

import sys
import time

DELAY = 1.0  # seconds of work before anything is shown: quick calls stay silent
_LINE_EVERY = 5.0  # seconds between plain lines without tqdm


def progress_bar(iterable, enabled: bool, description: str, *, unit: str = "batch"):
    """`iterable` wrapped in a progress display when `enabled`, else unchanged."""
    if not enabled:
        return iterable
    items = list(iterable)
    progress = Progress(len(items), description, unit=unit)

    def counted():
        try:
            for item in items:
                yield item
                progress.update(1)
        finally:
            progress.close()

    return counted()


class Progress:
    """Items done out of `total`, with rate and ETA, on stderr.

    Example:
        >>> progress = Progress(len(files), "explain", unit="image")
        >>> progress.describe("rectgrad"); progress.update(32); progress.close()
    """

    def __init__(self, total: int, description: str, *, unit: str = "item"):
        self.total, self.description, self.unit = int(total), description, unit
        self.done, self.note = 0, ""
        self._start = time.monotonic()
        self._last_line = self._start
        try:
            from tqdm import tqdm
        except ImportError:  # optional: plain lines without tqdm
            self._bar = None
        else:
            self._bar = tqdm(total=self.total, desc=description, unit=unit, delay=DELAY,
                             file=sys.stderr, dynamic_ncols=True)

    def describe(self, note: str) -> None:
        """What is being done now (e.g. the method running)."""
        self.note = note
        if self._bar is not None:
            self._bar.set_postfix_str(note, refresh=False)

    def update(self, n: int) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
            return
        now = time.monotonic()
        if now - self._start >= DELAY and (now - self._last_line >= _LINE_EVERY
                                           or self.done >= self.total):
            self._last_line = now
            print(self.line(now), file=sys.stderr, flush=True)

    def line(self, now: float | None = None) -> str:
        """The plain progress line: count, rate, ETA and what is running."""
        elapsed = (time.monotonic() if now is None else now) - self._start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        eta = (self.total - self.done) / rate if rate > 0 else float("inf")
        note = f" [{self.note}]" if self.note else ""
        return (f"{self.description}: {self.done}/{self.total} {self.unit}s, {rate:.2f} "
                f"{self.unit}s/s, ETA {eta:.0f} s{note}")

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
