"""A progress bar for long work (training epochs, evaluation): count, rate, ETA and live numbers, on stderr.

    bar = Progress(total=469, desc="epoch 3/10", unit="img")
    for x, y in loader:
        ...
        bar.update(len(x), loss=0.4321, acc=0.8712)
    bar.close(val_loss=0.39)                  # the final line stays on screen

On a terminal the line is redrawn in place (at most ten times a second); elsewhere (CI logs, pipes) only the
closing line is printed, so logs get one line per epoch instead of hundreds.
"""

from __future__ import annotations

import sys
import time


def _clock(seconds):
    seconds = int(max(0, seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _fmt(value):
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 1000 else f"{value:.4g}"
    return str(value)


class Progress:
    """``total`` units of work (None: unknown); ``update(n, **numbers)``; ``close(**numbers)``."""

    def __init__(self, total=None, desc="", unit="it", file=None, live=None, width=24):
        self.total, self.desc, self.unit, self.width = total, desc, unit, width
        self.file = file if file is not None else sys.stderr
        self.live = live if live is not None else bool(getattr(self.file, "isatty", lambda: False)())
        self.done, self.numbers = 0, {}
        self.start = self._last_draw = time.perf_counter()
        self.closed = False

    def update(self, n=1, **numbers):
        self.done += n
        self.numbers.update(numbers)
        now = time.perf_counter()
        if self.live and now - self._last_draw >= 0.1:
            self._last_draw = now
            self.file.write("\r" + self.line() + "\x1b[K")
            self.file.flush()

    def line(self):
        elapsed = time.perf_counter() - self.start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        parts = [self.desc] if self.desc else []
        if self.total:
            frac = min(1.0, self.done / self.total)
            filled = int(frac * self.width)
            bar = "=" * filled + (">" if filled < self.width else "") + " " * (self.width - filled - 1)
            parts.append(f"[{bar[:self.width]}] {self.done}/{self.total}")
        else:
            parts.append(f"{self.done}")
        parts += [f"{k} {_fmt(v)}" for k, v in self.numbers.items()]
        parts.append(f"{rate:,.0f} {self.unit}/s")
        if self.total and self.done < self.total and rate > 0:
            parts.append(f"ETA {_clock((self.total - self.done) / rate)}")
        else:
            parts.append(_clock(elapsed))
        return "  ".join(parts)

    def close(self, **numbers):
        if self.closed:
            return
        self.closed = True
        self.numbers.update(numbers)
        self.file.write(("\r" if self.live else "") + self.line() + ("\x1b[K" if self.live else "") + "\n")
        self.file.flush()
