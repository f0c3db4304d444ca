"""Backup benchmark: create and verify a backup of a 1,000,000-ticket PostgreSQL database.

Seeds the tickets set-based (as bench/archive.py does) in a throwaway database, then times
``create_backup`` (pg_dump from an exported snapshot, plus row counts and the manifest)
and ``verify_backup`` (checksum, restore into a scratch database, count rows), ``--runs``
times each. The baseline measured in the same run is a bare ``pg_dump -Fc`` of the same
database to /dev/null-like scratch space: what the backup costs beyond the dump itself.

    .venv/bin/python bench/backup.py --write-results
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from time import perf_counter

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository, when run as bench/backup.py

from bench import common
from bench.archive import seed
from itsm.backups import dbtools
from itsm.backups.service import create_backup, verify_backup
from itsm.extensions import db

SECTION = "## Backups (bench/backup.py)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickets", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--write-results", action="store_true")
    args = parser.parse_args()
    now = datetime.now(UTC).replace(microsecond=0)
    created, verified, bare, sizes = [], [], [], []
    with common.postgres_database() as url, tempfile.TemporaryDirectory(prefix="itsm-bench-backup-") as tmp:
        app = common.bench_app(url, BACKUP_DIR=tmp)
        common.migrate(app)
        seed(app, args.tickets, now)
        with app.app_context():
            libpq = dbtools.libpq_url(db.engine.url)
            for run in range(args.runs):
                start = perf_counter()
                subprocess.run(["pg_dump", "-Fc", "--compress=6", f"--file={tmp}/bare.dump", f"--dbname={libpq}"],
                               check=True)
                bare.append(perf_counter() - start)
                start = perf_counter()
                backup = create_backup()
                created.append(perf_counter() - start)
                sizes.append(backup.size)
                start = perf_counter()
                verify_backup(backup.path)
                verified.append(perf_counter() - start)
                print(f"run {run + 1}/{args.runs}: bare pg_dump {bare[-1]:.1f} s, backup {created[-1]:.1f} s, "
                      f"verify {verified[-1]:.1f} s, {backup.size / 2**20:.1f} MiB", flush=True)
                backup.path.unlink()
                backup.manifest_path.unlink()
            db.engine.dispose()
    c, v, b = statistics.median(created), statistics.median(verified), statistics.median(bare)
    rows = [f"| measure (median of {args.runs}) | value |", "|---|---|",
            f"| baseline: bare `pg_dump -Fc` | {b:.1f} s |",
            f"| `flask backup create` (snapshot, row counts, dump, checksum, manifest) | {c:.1f} s ({c / b:.2f}x) |",
            f"| `flask backup verify` (checksum, restore into a scratch database, row counts) | {v:.1f} s |",
            f"| backup size | {statistics.median(sizes) / 2**20:.1f} MiB |"]
    notes = [f"- PostgreSQL database with {args.tickets:,} tickets (seeded as in bench/archive.py), its indexes "
             "included (two trigram GIN indexes among them, rebuilt on every verify restore)."]
    print("\n" + "\n".join(rows + [""] + notes))
    if args.write_results:
        common.write_section(SECTION, [*common.section_head(SECTION, "bench/backup.py", common.machine()),
                                       *notes, "", *rows])


if __name__ == "__main__":
    main()
