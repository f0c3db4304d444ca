"""CSV export of the ticket list: streamed, read in keyset batches, safe to open in a spreadsheet."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator

from itsm.tickets.models import PRIORITIES

HEADER = ("id", "title", "priority", "column", "assignee", "requester", "category",
          "created (UTC)", "updated (UTC)", "archived (UTC)")
# A spreadsheet runs a cell that starts with one of these as a formula (OWASP "CSV injection");
# tab and carriage return count too, since some spreadsheets strip them first.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
ROWS_PER_CHUNK = 200


def safe_cell(value) -> str:
    """The cell's text, with a leading quote when a spreadsheet would read it as a formula."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def _when(value) -> str:
    return value.isoformat(timespec="seconds") if value else ""


def csv_lines(rows: Iterable[tuple]) -> Iterator[str]:
    """The header, then the rows, a chunk of lines at a time (csv quotes commas, quotes and newlines)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(HEADER)
    yield _drain(buffer)  # the download starts before the first read
    for n, (ticket_id, title, priority, column, assignee_name, assignee_email, requester, category,
            created, updated, archived) in enumerate(rows, start=1):
        writer.writerow((ticket_id, safe_cell(title), PRIORITIES.get(priority, priority), safe_cell(column),
                         safe_cell(assignee_name or assignee_email), safe_cell(requester), safe_cell(category),
                         _when(created), _when(updated), _when(archived)))
        if n % ROWS_PER_CHUNK == 0:
            yield _drain(buffer)
    yield _drain(buffer)


def _drain(buffer: io.StringIO) -> str:
    text = buffer.getvalue()
    buffer.seek(0)
    buffer.truncate()
    return text
