"""Progress of ``site-node check-data`` on long work, on stderr (stdout keeps the report).

On a terminal: a transient bar with the rows checked and the share of the file read. Otherwise
(a pipe, a log file): a log line every :data:`INTERVAL_S` seconds, so a long check of a large
file says it is alive without flooding the log.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

from site_node.data.table_check import Progress as Checked
from site_node.data.table_check import ProgressFn

log = logging.getLogger(__name__)
#: Seconds between two progress lines when stderr is not a terminal.
INTERVAL_S = 5.0


def _share(fraction: float | None) -> str:
    return "" if fraction is None else f" ({fraction:.0%} of the file)"


@contextmanager
def data_progress(console: Console | None = None) -> Iterator[ProgressFn]:
    """A progress callback for :func:`site_node.data.load_site_data`, shown while open."""
    console = console or Console(stderr=True)
    if console.is_terminal:
        columns = (TextColumn("checking {task.description}"), BarColumn(), TaskProgressColumn(),
                   TimeElapsedColumn())
        with Progress(*columns, console=console, transient=True) as bar:
            task = bar.add_task("rows", total=1.0)

            def show(done: Checked) -> None:
                bar.update(task, completed=done.fraction or 0.0,
                           description=f"{done.rows:,} rows")
            yield show
        return
    last = time.monotonic()

    def log_line(done: Checked) -> None:
        nonlocal last
        now = time.monotonic()
        if now - last >= INTERVAL_S:
            last = now
            log.info("checked %s rows%s", f"{done.rows:,}", _share(done.fraction))
    yield log_line
