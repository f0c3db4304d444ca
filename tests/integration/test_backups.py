"""Backups on SQLite and PostgreSQL: round trip, verification, bad input, retention, jobs and the page."""

from __future__ import annotations

import errno
import json
import shutil
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from itsm.backups import service
from itsm.backups.store import list_backups, manifest_path
from itsm.backups.tasks import backup_database
from itsm.extensions import db
from itsm.tickets.models import Ticket
from tests import factories


@pytest.fixture
def app_config(tmp_path):
    return {"BACKUP_DIR": str(tmp_path / "backups")}


def titles() -> list[str]:
    db.session.expire_all()
    return sorted(db.session.scalars(sa.select(Ticket.title)))


def content() -> dict[str, list[tuple]]:
    """Every row of the desk's tables, to compare a restore with what was backed up."""
    db.session.expire_all()
    tables = ("tickets", "ticket_events", "comments", "users", "board_columns", "ticket_recurrences")
    return {t: sorted(tuple(map(str, r)) for r in db.session.execute(sa.text(f"SELECT * FROM {t}")))  # noqa: S608
            for t in tables}


def service_comment(ticket) -> None:
    from itsm.tickets.service import add_comment

    add_comment(db.session.merge(ticket), None, "Backed up with me")
    db.session.commit()


def test_backup_change_restore_gives_back_the_data(app, runner):
    with app.app_context():
        for title in ("Printer jams", "VPN drops", "New laptop"):
            ticket = factories.make_ticket(title)
        service_comment(ticket)
        factories.make_template("Weekly {date}", start=datetime.now(UTC), recurrence_interval="weekly")
        before = content()
    created = runner.invoke(args=["backup", "create"])
    assert created.exit_code == 0, created.output
    with app.app_context():
        [backup] = list_backups()
        assert backup.manifest["tables"]["tickets"] == 4 and backup.manifest["migration"]
        db.session.execute(sa.update(Ticket).where(Ticket.title == "VPN drops").values(title="changed"))
        db.session.execute(sa.delete(Ticket).where(Ticket.title == "New laptop"))
        db.session.commit()
        factories.make_ticket("after the backup")
    refused = runner.invoke(args=["backup", "restore", backup.name])
    assert refused.exit_code == 1 and "--yes" in refused.output
    with app.app_context():
        assert "after the backup" in titles()  # nothing changed without --yes
    restored = runner.invoke(args=["backup", "restore", backup.name, "--yes"])
    assert restored.exit_code == 0, restored.output
    with app.app_context():
        assert content() == before
        safety = [b for b in list_backups() if b.name != backup.name]
        assert len(safety) == 1 and safety[0].manifest["tables"]["tickets"] == 4  # what was there before


def test_verify_records_success_and_catches_damage(app, runner):
    with app.app_context():
        factories.make_ticket("Keep me")
        backup = service.create_backup()
    good = runner.invoke(args=["backup", "verify", str(backup.path)])
    assert good.exit_code == 0 and "counts match" in good.output
    with app.app_context():
        assert list_backups()[0].verified is True
    data = bytearray(backup.path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    backup.path.write_bytes(bytes(data))
    bad = runner.invoke(args=["backup", "verify", backup.name])
    assert bad.exit_code == 1 and "sha256" in bad.output and "Traceback" not in bad.output
    assert json.loads(manifest_path(backup.path).read_text())["verified"] is False
    backup.path.write_bytes(bytes(data[: len(data) // 3]))
    truncated = runner.invoke(args=["backup", "verify", backup.name])
    assert truncated.exit_code == 1 and "truncated" in truncated.output


def test_a_manifest_that_lies_about_the_rows_fails_verification(app):
    with app.app_context():
        factories.make_ticket("one")
        backup = service.create_backup()
        manifest = json.loads(backup.manifest_path.read_text())
        manifest["tables"]["tickets"] = 5
        backup.manifest_path.write_text(json.dumps(manifest))
        with pytest.raises(service.BackupError, match="different row counts"):
            service.verify_backup(backup.path)


def test_bad_input_is_one_line_and_changes_nothing(app, runner, tmp_path):
    with app.app_context():
        backup = service.create_backup()
    missing = runner.invoke(args=["backup", "verify", "nope.sqlite.gz"])
    assert missing.exit_code == 1 and "no backup file" in missing.output
    foreign = backup.path.with_name("itsm-20200101T000000Z.sqlite.gz")
    foreign.write_bytes(b"not a backup at all")
    out = runner.invoke(args=["backup", "restore", foreign.name, "--yes"])
    assert out.exit_code == 1 and "no manifest" in out.output and len(out.output.strip().splitlines()) <= 2
    manifest = json.loads(backup.manifest_path.read_text())
    manifest["migration"] = "9999_from_the_future"
    backup.manifest_path.write_text(json.dumps(manifest))
    newer = runner.invoke(args=["backup", "restore", backup.name, "--yes"])
    assert newer.exit_code == 1 and "newer version" in newer.output
    with app.app_context():
        assert len(list_backups()) == 2  # no safety backup was taken for a refused restore


def test_unwritable_directory_and_full_disk(app, runner, tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    app.config["BACKUP_DIR"] = str(blocker / "backups")
    result = runner.invoke(args=["backup", "create"])
    assert result.exit_code == 1 and "cannot create the backup directory" in result.output
    app.config["BACKUP_DIR"] = str(tmp_path / "backups")
    with app.app_context():
        earlier = service.create_backup(datetime.now(UTC) - timedelta(days=1))

    def full(*_args, **_kwargs):  # fault injection: the disk fills up while the dump is written
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(shutil, "copyfileobj", full)
    monkeypatch.setattr("itsm.backups.dbtools.pg_dump", lambda *a: full())
    result = runner.invoke(args=["backup", "create"])
    assert result.exit_code == 1 and "disk is full" in result.output
    assert sorted(p.name for p in (tmp_path / "backups").iterdir()) == sorted(
        [earlier.name, earlier.manifest_path.name])  # no partial file left, the earlier backup untouched


def two_years_of_backups(directory, now: datetime, verified_day: str | None = None) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for days in range(730):
        when = (now - timedelta(days=days)).replace(hour=3, minute=0, second=0)
        name = f"itsm-{when:%Y%m%dT%H%M%SZ}.sqlite.gz"
        (directory / name).write_bytes(b"x")
        manifest = {"format": 1, "sha256": "0", "size": 1, "database": "sqlite", "tables": {},
                    "verified": when.date().isoformat() == verified_day}
        (directory / (name + ".json")).write_text(json.dumps(manifest))


def test_retention_over_two_years_keeps_exactly_the_tiers(app, runner, tmp_path):
    now = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
    directory = tmp_path / "backups"
    two_years_of_backups(directory, now, verified_day="2025-06-15")
    with app.app_context():
        kept, doomed, _ = service.prune(now, dry_run=True)
        assert len(kept) + len(doomed) == 730 and len(list(directory.glob("*.gz"))) == 730  # dry run
        kept, doomed, _ = service.prune(now)
    days = sorted(b.created_at.date().isoformat() for b in kept)
    daily = [(now - timedelta(days=d)).date().isoformat() for d in range(30)]
    weekly = ["2026-09-06", "2026-09-13", "2026-09-20", "2026-09-27", "2026-10-04", "2026-10-11", "2026-10-18"]
    monthly = ["2025-12-31", "2026-01-31", "2026-02-28", "2026-03-31", "2026-04-30", "2026-05-31", "2026-06-30",
               "2026-07-31", "2026-08-31", "2026-09-30"]
    assert days == sorted(daily + weekly + monthly + ["2025-06-15"])  # and the newest verified one
    assert sorted(p.name[5:13] for p in directory.glob("*.gz")) == [d.replace("-", "") for d in days]
    assert len(list(directory.glob("*.json"))) == len(days)


def test_prune_cli_dry_run(app, runner, tmp_path):
    two_years_of_backups(tmp_path / "backups", datetime.now(UTC))
    result = runner.invoke(args=["backup", "prune", "--dry-run"])
    assert result.exit_code == 0 and "would delete" in result.output and "Nothing was changed" in result.output
    assert len(list((tmp_path / "backups").glob("*.gz"))) == 730


@pytest.mark.parametrize("app_config", [{"JOBS_EAGER": True}], indirect=False)
def test_the_backup_job_verifies_what_it_wrote(app, tmp_path, app_config):
    app.config["BACKUP_DIR"] = str(tmp_path / "backups")
    with app.app_context():
        factories.make_ticket("nightly")
        result = backup_database.apply()
        [backup] = list_backups()
        assert result["file"] == backup.name and backup.verified is True
        assert "counts match" in backup.manifest["verify_message"]


def test_backups_page(app, client, auth, redis):
    with app.app_context():
        backup = service.create_backup()
    auth.login()
    page = client.get("/admin/backups").get_data(as_text=True)
    assert backup.name in page and "daily" in page and "not yet" in page
    download = client.get(f"/admin/backups/{backup.name}/download")
    assert download.status_code == 200 and download.data == backup.path.read_bytes()
    download.close()
    assert client.get("/admin/backups/..%2F..%2Fetc%2Fpasswd/download").status_code == 404
    assert auth.post("/admin/backups/create").status_code == 302
    assert auth.post(f"/admin/backups/{backup.name}/verify").status_code == 302
    assert redis.llen("rq:queue:low") == 2  # both queued for a worker
    auth.logout()
    auth.login_agent()
    assert client.get("/admin/backups").status_code == 403


def test_a_failed_backup_is_retried_after_60_120_and_240_seconds():
    from itsm.backups.store import BackupError

    assert [backup_database.autoretry_countdown(n) for n in range(3)] == [60, 120, 240]
    assert backup_database.max_retries == 3 and BackupError in backup_database.autoretry_for


def test_pg_dump_missing_or_older_than_the_server(app, procs, database_url, tmp_path):
    """The client tools come from the machine: a missing or too old pg_dump is a clear error."""
    if not database_url.startswith("postgresql"):
        pytest.skip("pg_dump is PostgreSQL's")
    backups = str(tmp_path / "backups")
    missing = procs.run("backup", "create", PATH=str(tmp_path), BACKUP_DIR=backups)
    assert missing.returncode == 1 and "pg_dump was not found on PATH" in missing.stderr
    old = tmp_path / "old-tools"
    old.mkdir()
    script = old / "pg_dump"
    script.write_text("#!/bin/sh\necho 'pg_dump (PostgreSQL) 9.6.24'\n")  # an old client left on the machine
    script.chmod(0o755)
    too_old = procs.run("backup", "create", PATH=f"{old}:/usr/bin:/bin", BACKUP_DIR=backups)
    assert too_old.returncode == 1 and "pg_dump is version 9 but the server is PostgreSQL" in too_old.stderr
    assert not (tmp_path / "backups").exists() or not list((tmp_path / "backups").iterdir())


def test_list_shows_the_files_real_size_and_flags_a_mismatch(app, runner, client, auth):
    with app.app_context():
        factories.make_ticket("sized")
        backup = service.create_backup()
    listed = runner.invoke(args=["backup", "list"])
    assert listed.exit_code == 0 and "mismatch" not in listed.output.lower()
    backup.path.write_bytes(b"")  # the file was emptied (a full disk, a bad copy): its manifest still says more
    listed = runner.invoke(args=["backup", "list"])
    assert listed.exit_code == 0, listed.output
    line = next(x for x in listed.output.splitlines() if backup.name in x)
    assert " 0 B " in line and "SIZE MISMATCH" in line and str(backup.manifest["size"]) in line
    auth.login()
    page = client.get("/admin/backups").get_data(as_text=True)
    assert "0 B" in page and "size mismatch" in page.lower()


def test_restore_refuses_a_backup_whose_verification_failed_unless_forced(app, runner):
    with app.app_context():
        factories.make_ticket("in the backup")
        backup = service.create_backup()
        manifest = json.loads(backup.manifest_path.read_text())
        manifest.update(verified=False, verify_message="restores with different row counts")
        backup.manifest_path.write_text(json.dumps(manifest))
        factories.make_ticket("after the backup")
    refused = runner.invoke(args=["backup", "restore", backup.name, "--yes"])
    assert refused.exit_code == 1
    assert "failed its verification" in refused.stderr and "--force" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1 and not refused.stdout
    with app.app_context():
        assert "after the backup" in titles() and len(list_backups()) == 1  # nothing changed, no safety backup
    forced = runner.invoke(args=["backup", "restore", backup.name, "--yes", "--force"])
    assert forced.exit_code == 0, forced.output
    with app.app_context():
        assert titles() == ["in the backup"]


def test_a_restore_does_not_bring_back_a_session_that_ended_after_the_backup(app, client, auth, runner):
    """A login saved in the backup and logged out afterwards stays ended after the restore (its old cookie,
    replayed, gets the login page); a login still going at the restore goes on."""
    from tests.conftest import AuthActions

    desk = app.test_client()
    AuthActions(desk).login("agent@example.com")
    auth.login()
    saved = client.get_cookie("session").value
    with app.app_context():
        backup = service.create_backup()
    assert auth.logout().status_code == 302
    restored = runner.invoke(args=["backup", "restore", backup.name, "--yes"])
    assert restored.exit_code == 0, restored.output
    replay = app.test_client()
    replay.set_cookie("session", saved)
    assert replay.get("/board").status_code == 302  # to the login page
    assert desk.get("/board").status_code == 200


def test_a_restore_that_fails_midway_keeps_maintenance_mode_on(app, runner, database_url):
    """Fault: the backup file is cut short where its manifest cannot tell (rewritten to match, as damage
    done before the manifest was would look), so the restore fails.

    Must survive: nothing half restored is served. On PostgreSQL pg_restore has begun dropping and
    loading tables: maintenance mode stays on, the last line says so and names the safety backup, which
    restores the database once the operator turns to it. On SQLite the file fails before the database is
    touched (its restore is one transaction): nothing changed and maintenance mode is lifted."""
    with app.app_context():
        for n in range(50):
            factories.make_ticket(f"in the backup {n}")
        backup = service.create_backup()
        data = backup.path.read_bytes()
        backup.path.write_bytes(data[: len(data) // 2])
        manifest = json.loads(backup.manifest_path.read_text())
        manifest.update(sha256=service.sha256_of(backup.path), size=backup.path.stat().st_size)
        backup.manifest_path.write_text(json.dumps(manifest))
        factories.make_ticket("after the backup")
    failed = runner.invoke(args=["backup", "restore", backup.name, "--yes"])
    assert failed.exit_code == 1
    last = failed.stderr.strip().splitlines()[-1]
    if database_url.startswith("sqlite"):
        assert "not a readable compressed SQLite backup" in last and "maintenance mode was lifted" in last
        with app.app_context():
            assert "after the backup" in titles() and len(titles()) == 51
        return
    assert "partly restored" in last and "maintenance mode stays on" in last, failed.stderr
    with app.app_context():
        from itsm import maintenance

        assert maintenance.current(app).on
        [safety] = [b for b in list_backups() if b.name != backup.name]
    assert safety.name in last
    again = runner.invoke(args=["backup", "restore", safety.name, "--yes"])
    assert again.exit_code == 0, again.output
    assert "maintenance mode stays on, as it was before" in again.output
    assert runner.invoke(args=["maintenance", "off"]).exit_code == 0
    with app.app_context():
        assert "after the backup" in titles() and len(titles()) == 51


def test_sizes_are_human_and_downloads_carry_their_real_type(app, client, auth, database_url):
    from itsm.backups.store import human_size

    assert [human_size(n) for n in (0, 1023, 13_414, 5 * 1024**2 + 1, 3 * 1024**3)] == [
        "0 B", "1023 B", "13.1 KiB", "5.0 MiB", "3.0 GiB"]
    with app.app_context():
        factories.make_ticket("sized")
        backup = service.create_backup()
    auth.login()
    page = client.get("/admin/backups").get_data(as_text=True)
    assert f'<td class="num">{human_size(backup.size)}</td>' in page and "0.0 MiB" not in page
    download = client.get(f"/admin/backups/{backup.name}/download")
    expected = "application/gzip" if backup.name.endswith(".sqlite.gz") else "application/octet-stream"
    assert download.status_code == 200 and download.mimetype == expected, download.headers
    assert "Content-Encoding" not in download.headers  # a .gz is the file itself, not an encoded SQLite one
    assert f"filename={backup.name}" in download.headers["Content-Disposition"]
    download.close()
