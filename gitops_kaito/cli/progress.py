"""Live progress of models on long waits (`sync --wait`, `demo`): one table redrawn in place on a terminal,
one plain line per change otherwise (CI logs), nothing when quiet.
"""

from __future__ import annotations

import os
import re
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import TextIO

from gitops_kaito.core.status import SUMMARY_ORDER, ModelReport, drift_text, sku_cell
from gitops_kaito.model.states import ModelState

MODEL_COLUMNS = ("model", "state", "sku x nodes", "message")
GAP = "   "
MIN_FLEX = 12  # below this the last column is not worth keeping: the line is cut instead
FALLBACK_SIZE = (80, 24)
# Anything that would move the cursor (newlines, tabs, escape sequences) breaks the count of lines to redraw.
_CONTROL = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|[\x00-\x1f\x7f]")


def clean(text: str) -> str:
    """One printable line: control characters and escape sequences become spaces."""
    return " ".join(_CONTROL.sub(" ", text).split())


def fit(text: str, width: int, ellipsis: str = "…") -> str:
    """`text` cut to `width` columns, ending in `ellipsis` when cut."""
    if len(text) <= width:
        return text
    if width <= len(ellipsis):
        return text[:max(width, 0)]
    return text[:width - len(ellipsis)] + ellipsis


def format_elapsed(seconds: float) -> str:
    """'45s', '2m10s', '1h02m'."""
    s = max(int(seconds), 0)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


def render_table(columns: Sequence[str], rows: Sequence[Sequence[str]], width: int, *,
                 indent: str = "  ", min_widths: Sequence[int] = (), ellipsis: str = "…") -> list[str]:
    """kubectl-style lines (upper-case headers, padded columns) that each fit in `width` columns.

    The last column takes what is left and is cut first; when even that is too little, whole lines are cut.
    """
    cells = [[clean(str(c)) for c in row] for row in rows]
    n = len(columns)
    widths = [max(len(columns[i]), *(len(r[i]) for r in cells), *(min_widths[i:i + 1])) for i in range(n)]
    def fixed() -> int:
        return len(indent) + sum(widths[:-1]) + len(GAP) * (n - 1)

    # Too narrow for the last column: squeeze the middle ones (never the first, which names the row) first.
    while fixed() + MIN_FLEX > width:
        middle = [i for i in range(1, n - 1) if widths[i] > len(columns[i])]
        if not middle:
            break
        widest = max(middle, key=lambda i: widths[i])
        widths[widest] = max(len(columns[widest]), widths[widest] - (fixed() + MIN_FLEX - width))
    widths[-1] = min(widths[-1], max(width - fixed(), MIN_FLEX))

    def line(values: Sequence[str]) -> str:
        padded = [fit(v, w, ellipsis).ljust(w) for v, w in zip(values[:-1], widths[:-1], strict=True)]
        text = indent + GAP.join([*padded, fit(values[-1], widths[-1], ellipsis)])
        return fit(text.rstrip(), width, ellipsis)

    return [line([c.upper() for c in columns]), *(line(r) for r in cells)]


def terminal_size(out: TextIO) -> tuple[int, int]:
    """(columns, lines) of the terminal behind `out`; asked every frame, so a resize is followed."""
    try:
        size = os.get_terminal_size(out.fileno())
    except (AttributeError, ValueError, OSError):
        return FALLBACK_SIZE
    return (size.columns or FALLBACK_SIZE[0], size.lines or FALLBACK_SIZE[1])


class Progress:
    """A table redrawn in place on a terminal (one write per frame, cursor moved up over the previous frame),
    one plain line per row that changed otherwise, nothing at all when quiet."""

    def __init__(self, out: TextIO, live: bool, columns: Sequence[str] = MODEL_COLUMNS, *,
                 plain: Callable[[Sequence[str]], str] | None = None, quiet: bool = False,
                 stamp: Callable[[], str] | None = None,
                 size: Callable[[], tuple[int, int]] | None = None) -> None:
        self.out = out
        self.live = live and not quiet
        self.quiet = quiet
        self.columns = tuple(columns)
        self._plain = plain or (lambda row: "  " + ": ".join(clean(c) for c in row if c))
        self._stamp = stamp  # a prefix for plain lines (elapsed time); never part of what counts as a change
        self._size = size or (lambda: terminal_size(out))
        self._drawn = 0
        self._widths: list[int] = []  # only grow, so columns do not jump between frames
        self._last: dict[str, str] = {}
        encoding = (getattr(out, "encoding", None) or "").lower().replace("-", "")
        self._ellipsis = "…" if encoding.startswith("utf") else "..."

    def say(self, text: str) -> None:
        """A message above the table; the next frame is drawn below it."""
        if self.quiet:
            return
        self._drawn = 0
        print(text, file=self.out, flush=True)

    def show(self, rows: Sequence[Sequence[str]], footer: str = "") -> None:
        """One frame; rows are keyed by their first cell. Plain mode prints only rows whose line changed."""
        if self.quiet:
            return
        if self.live:
            self._frame(rows, footer)
            return
        for row in rows:
            line = self._plain(row)
            if self._last.get(row[0]) != line:
                self._last[row[0]] = line
                print((self._stamp() if self._stamp else "") + line, file=self.out, flush=True)

    def close(self, clear: bool = False) -> None:
        """Leave the last frame on screen, or erase it (the caller prints a final table in its place)."""
        if self.live and clear and self._drawn:
            self.out.write(f"\x1b[{self._drawn}F\x1b[J")
            self.out.flush()
        self._drawn = 0

    def _frame(self, rows: Sequence[Sequence[str]], footer: str) -> None:
        columns, height = self._size()
        width = max(columns - 1, 20)  # never the last column: some terminals wrap there and the count goes wrong
        room = max(height - 2 - (1 if footer else 0), 1)  # the cursor cannot move above the top of the screen
        shown = list(rows) if len(rows) <= room else list(rows[:room - 1])
        seen = [len(c) for c in self.columns]
        for row in shown:
            seen = [max(w, len(clean(str(c)))) for w, c in zip(seen, row, strict=True)]
        self._widths = [max(a, b) for a, b in zip(self._widths or seen, seen, strict=True)]
        lines = render_table(self.columns, shown, width, min_widths=self._widths[:-1],
                             ellipsis=self._ellipsis)
        if len(shown) < len(rows):
            lines.append(fit(f"  … and {len(rows) - len(shown)} more", width, self._ellipsis))
        if footer:
            lines.append(fit(clean(footer), width, self._ellipsis))
        up = f"\x1b[{self._drawn}F\x1b[J" if self._drawn else ""
        self.out.write(up + "\n".join(lines) + "\n")  # one write: the terminal never shows half a frame
        self.out.flush()
        self._drawn = len(lines)


# -- models ----------------------------------------------------------------------------------------------------

def model_row(report: ModelReport) -> tuple[str, str, str, str]:
    message = report.message if report.state != ModelState.READY else (report.endpoint or report.message)
    drift = drift_text(report.drift)  # drift left in place (drift: report) shows beside any state
    return (f"{report.namespace}/{report.name}", report.state, sku_cell(report),
            "; ".join(m for m in (message, drift) if m))


def model_line(row: Sequence[str]) -> str:
    """The plain line of one model: 'ml/phi: Provisioning (Standard_NC24ads_A100_v4 x 1) - waiting for ...'."""
    model, state, sku, message = (clean(c) for c in row)
    return f"{model}: {state}" + (f" ({sku})" if sku else "") + (f" - {message}" if message else "")


def summary(reports: Sequence[ModelReport], elapsed_s: float | None = None) -> str:
    """'3/5 Ready, 1 Provisioning, 1 Failed, 2m10s elapsed'."""
    counts = Counter(r.state for r in reports)
    parts = [f"{counts.get('Ready', 0)}/{len(reports)} Ready"]
    order = [s for s in SUMMARY_ORDER if s != ModelState.READY and counts.get(s)]
    parts += [f"{counts[s]} {s}" for s in order + sorted(s for s in counts if s not in SUMMARY_ORDER)]
    if elapsed_s is not None:
        parts.append(f"{format_elapsed(elapsed_s)} elapsed")
    return ", ".join(parts)


class ModelProgress:
    """Progress of model reports: the table and a summary line with the elapsed time."""

    def __init__(self, out: TextIO, live: bool, *, quiet: bool = False,
                 clock: Callable[[], float] = time.monotonic,
                 size: Callable[[], tuple[int, int]] | None = None) -> None:
        self._clock = clock
        self._started = clock()
        self._reports: tuple[ModelReport, ...] = ()
        self.progress = Progress(out, live, MODEL_COLUMNS, plain=model_line, quiet=quiet,
                                 stamp=lambda: f"[{format_elapsed(self.elapsed)}] ", size=size)

    @property
    def elapsed(self) -> float:
        return self._clock() - self._started

    def update(self, reports: Sequence[ModelReport]) -> None:
        self._reports = tuple(sorted(reports, key=lambda r: (r.namespace, r.name)))
        self.tick()

    def tick(self) -> None:
        """Redraw (the elapsed time moves on a terminal); plain output only prints changes."""
        self.progress.show([model_row(r) for r in self._reports], summary(self._reports, self.elapsed))

    def say(self, text: str) -> None:
        self.progress.say(text)

    def close(self, clear: bool = False) -> None:
        self.progress.close(clear)
