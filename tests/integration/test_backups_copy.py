"""Copies of verified backups off the machine (BACKUP_COPY_COMMAND): real workers, real commands (small
scripts this test writes), a real SMTP server. Once per verified backup, recorded in the manifest, a
failure or a hang told to the admins and never costing the backup; bad commands are one line."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
import sqlalchemy as sa

from itsm.automation.admin_mail import alert_backup_copy_failed
from itsm.backups import service
from itsm.backups.store import BackupError, list_backups, sha256_of
from itsm.backups.tasks import backup_database, verify_backup
from itsm.extensions import db
from itsm.mail.models import EmailMessage
from jobs.models import JobRun
from tests import factories
from tests.processes import ROOT, wait_for


@pytest.fixture
def app_config(mailserver, tmp_path):
    return {**mailserver.app_config(), "BACKUP_DIR": str(tmp_path / "backups")}


def script(tmp_path: Path, name: str, body: str, mode: int = 0o755) -> Path:
    """A command for BACKUP_COPY_COMMAND: a shell script in the test's own bin folder."""
    folder = tmp_path / "bin"
    folder.mkdir(exist_ok=True)
    path = folder / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(mode)
    return path


def manifest_of(backup) -> dict:
    return json.loads(backup.manifest_path.read_text())


def backups(tmp_path: Path) -> list:
    return list_backups(tmp_path / "backups")


def settled(tmp_path: Path):
    """The one backup, once its copy has an outcome (copied or failed)."""
    found = backups(tmp_path)
    return found[0] if len(found) == 1 and found[0].copy_state in ("copied", "copy failed") else None


def runs(app, task_name: str) -> list[JobRun]:
    with app.app_context():
        db.session.expire_all()
        return db.session.scalars(sa.select(JobRun).where(JobRun.task_name == task_name,
                                                           JobRun.status != "queued")).all()


def copy_alerts(app) -> list[EmailMessage]:
    with app.app_context():
        db.session.expire_all()
        return db.session.scalars(sa.select(EmailMessage).where(
            EmailMessage.kind == "system_failure", EmailMessage.subject.like("%Copying backup%"))).all()


def running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def verified_backup(app):
    with app.app_context():
        factories.make_ticket("worth copying")
        backup = service.create_backup()
        service.verify_backup(backup.path)
    return backup


def test_a_verified_backup_is_copied_once_and_recorded(app, procs, redis, tmp_path, runner, client, auth):
    offsite = tmp_path / "offsite"
    offsite.mkdir()
    calls = tmp_path / "calls"
    ship = script(tmp_path, "ship", f'echo "$#|$1|$2" >> {calls}\necho "sending $1" >&2\ncp "$1" "$2"\n')
    command = f"{ship} {{path}} {offsite}/"
    with app.app_context():
        factories.make_ticket("nightly")
        backup_database.delay()
    worker = procs.worker(BACKUP_COPY_COMMAND=command)
    backup = wait_for(lambda: settled(tmp_path), timeout=90, message="the nightly backup verified and copied")
    assert backup.verified is True and backup.copy_state == "copied", backup.copy
    assert (offsite / backup.name).read_bytes() == backup.path.read_bytes()
    assert calls.read_text().splitlines() == [f"2|{backup.path}|{offsite}/"]
    record = backup.copy
    assert record["exit_status"] == 0 and record["attempts"] == 1 and record["host"] == socket.gethostname()
    assert record["stderr"] == f"sending {backup.path}" and 0 <= record["seconds"] < 30
    assert record["message"].startswith("copied by ship in ") and backup.copied_at is not None

    # The same verification delivered again (a lost job requeued) and a manual one copy nothing more.
    with app.app_context():
        verify_backup.delay(backup.name, copy=True)
        verify_backup.delay(backup.name)
    wait_for(lambda: len([r for r in runs(app, "verify_backup") if r.status == "succeeded"]) == 3, timeout=60,
             message="three verifications")
    assert len(calls.read_text().splitlines()) == 1 and worker.poll() is None
    assert manifest_of(backup)["copy"]["attempts"] == 1

    listed = runner.invoke(args=["backup", "list"])
    line = next(x for x in listed.output.splitlines() if backup.name in x)
    assert "verified" in line and "copied 20" in line and "FAILED" not in line
    app.config["BACKUP_COPY_COMMAND"] = command
    auth.login()
    page = client.get("/admin/backups").get_data(as_text=True)
    assert "Copied off" in page and ">copied</span>" in page and "Copy again" not in page


def test_a_failed_copy_keeps_the_backup_marks_it_and_emails_the_admins(app, procs, redis, tmp_path, runner, client,
                                                                        auth, mailserver):
    mailserver.start()
    calls = tmp_path / "calls"
    failing = script(tmp_path, "ship", f'echo "$@" >> {calls}\necho "progress 0%"\n'
                                       'echo "AccessDenied: remote:itsm-backups is not writable" >&2\nexit 1\n')
    with app.app_context():
        quiet = factories.make_user("quiet.admin@example.com", role="admin")
        quiet.notify_system_failures = False  # asked not to be told about system failures
        db.session.commit()
        factories.make_ticket("nightly")
        backup_database.delay()
    worker = procs.worker(BACKUP_COPY_COMMAND=f"{failing} --to remote:itsm-backups", **mailserver.env())
    backup = wait_for(lambda: settled(tmp_path), timeout=90, message="the copy's outcome")
    wait_for(lambda: len(mailserver.messages) == 1, timeout=30, message="the alert at the SMTP server")
    [alert] = wait_for(lambda: [a for a in copy_alerts(app) if a.status == "sent"], timeout=10,
                       message="the alert marked sent")
    assert alert.to_address == "admin@example.com" and len(copy_alerts(app)) == 1  # not the admin who opted out
    mail = mailserver.messages[0]
    assert mail["Subject"] == f"[itsm] Copying backup {backup.name} failed" and mail["To"] == "admin@example.com"
    assert "AccessDenied" in alert.body_text and f"flask backup copy {backup.name}" in alert.body_text
    assert "kept" in alert.body_text and "AccessDenied" in alert.body_html

    # The backup is whole, still verified, and marked; the command ran once, its path last.
    assert backup.path.is_file() and sha256_of(backup.path) == backup.manifest["sha256"]
    assert backup.verified is True and backup.copy_state == "copy failed"
    record = backup.copy
    assert record["exit_status"] == 1 and record["timed_out"] is False and record["attempts"] == 1
    assert record["stderr"] == "AccessDenied: remote:itsm-backups is not writable"  # stderr only, not stdout
    assert record["message"].startswith("ship exited with status 1 after ") and "AccessDenied" in record["message"]
    assert calls.read_text().splitlines() == [f"--to remote:itsm-backups {backup.path}"]
    [verify] = wait_for(lambda: [r for r in runs(app, "verify_backup") if r.status == "succeeded"], timeout=10,
                        message="the verification's job finished")
    assert verify.result["copy"]["state"] == "failed" and len(runs(app, "verify_backup")) == 1
    assert worker.poll() is None and not runs(app, "copy_backup")  # no crash, no retry by itself

    listed = runner.invoke(args=["backup", "list"])
    line = next(x for x in listed.output.splitlines() if backup.name in x)
    assert "verified" in line and "COPY FAILED: ship exited with status 1" in line
    app.config["BACKUP_COPY_COMMAND"] = f"{failing} --to remote:itsm-backups"
    auth.login()
    page = client.get("/admin/backups").get_data(as_text=True)
    assert "copy failed" in page and "AccessDenied" in page and "Copy again" in page

    # Fixed: the retry by hand copies it, and counts the attempt.
    offsite = tmp_path / "offsite"
    offsite.mkdir()
    fixed = script(tmp_path, "ship-fixed", 'cp "$1" "$2"\n')
    app.config["BACKUP_COPY_COMMAND"] = f"{fixed} {{path}} {offsite}"
    retried = runner.invoke(args=["backup", "copy", backup.name])
    assert retried.exit_code == 0, retried.output
    assert "copied by ship-fixed" in retried.stdout
    assert (offsite / backup.name).read_bytes() == backup.path.read_bytes()
    again = manifest_of(backup)["copy"]
    assert again["state"] == "copied" and again["attempts"] == 2
    assert len(copy_alerts(app)) == 1  # a retry by hand tells the one running it, not every admin


def test_a_hanging_copy_is_stopped_at_its_timeout_and_told(app, procs, redis, tmp_path, client, auth, mailserver):
    """The admin page's Copy button queues the retry; the command hangs (with a child of its own) past
    BACKUP_COPY_TIMEOUT_SECONDS: both are killed, the copy is marked failed and the admins told once."""
    backup = verified_backup(app)
    pids = tmp_path / "pids"
    hang = script(tmp_path, "ship", f'sleep 300 &\necho $! > {pids}\necho "connecting to the remote" >&2\nwait\n')
    command = f"{hang} {{path}}"
    app.config["BACKUP_COPY_COMMAND"] = command
    auth.login()
    page = client.get("/admin/backups").get_data(as_text=True)
    assert "not copied" in page and f"/admin/backups/{backup.name}/copy" in page
    assert auth.post(f"/admin/backups/{backup.name}/copy").status_code == 302
    mailserver.start()
    worker = procs.worker(BACKUP_COPY_COMMAND=command, BACKUP_COPY_TIMEOUT_SECONDS="1", **mailserver.env())
    done = wait_for(lambda: settled(tmp_path), timeout=60, message="the copy stopped at its timeout")
    record = done.copy
    assert done.copy_state == "copy failed" and record["timed_out"] is True and record["exit_status"] is None
    assert record["message"].startswith("ship did not finish within 1 s (BACKUP_COPY_TIMEOUT_SECONDS)")
    assert "connecting to the remote" in record["stderr"] and 1 <= record["seconds"] < 20
    child = int(pids.read_text())
    wait_for(lambda: not running(child), timeout=10, message="the command's own child killed with it")
    wait_for(lambda: len(mailserver.messages) == 1, timeout=30, message="the alert at the SMTP server")
    assert mailserver.messages[0]["Subject"] == f"[itsm] Copying backup {backup.name} failed"
    [alert] = copy_alerts(app)
    assert "did not finish within 1 s" in alert.body_text and "connecting to the remote" in alert.body_text
    [job] = wait_for(lambda: [r for r in runs(app, "copy_backup") if r.status == "succeeded"], timeout=10,
                     message="the copy job finished")
    assert job.result["copy"]["state"] == "failed" and len(runs(app, "copy_backup")) == 1
    assert done.path.is_file() and done.verified is True and worker.poll() is None
    assert auth.post("/admin/backups/itsm-20200101T000000Z.sqlite.gz/copy").status_code == 404


@pytest.mark.parametrize(("command", "says"), [
    ("rclone copy '{path} remote:", "BACKUP_COPY_COMMAND cannot be split into words (No closing quotation): "
                                    "check its quotes"),
    ("rclone copy {file} remote:", "BACKUP_COPY_COMMAND has the unknown placeholder {file}"),
    ("{path} remote:", "BACKUP_COPY_COMMAND must start with the program to run"),
])
def test_a_copy_command_that_cannot_be_used_stops_the_app_with_one_line(procs, command, says):
    result = procs.run("backup", "list", BACKUP_COPY_COMMAND=command)
    assert result.returncode == 1
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("itsm: configuration error: ") and says in line, line


def test_a_worker_with_a_bad_copy_setting_does_not_start(procs):
    result = procs.run("worker", "--burst", BACKUP_COPY_COMMAND='aws s3 cp {path} "s3://bucket')
    assert result.returncode == 1 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    for bad in ("0", "21601", "soon"):
        result = procs.run("backup", "list", BACKUP_COPY_TIMEOUT_SECONDS=bad)
        [line] = result.stderr.strip().splitlines()
        assert result.returncode == 1 and "BACKUP_COPY_TIMEOUT_SECONDS must be" in line, line


def test_no_shell_placeholders_in_words_and_the_path_appended(app, procs, tmp_path):
    """A folder name full of shell syntax reaches the command as one argument and runs nothing."""
    folder = tmp_path / "back ups; touch INJECTED $(touch INJECTED2) `touch INJECTED3`"
    app.config["BACKUP_DIR"] = str(folder)
    with app.app_context():
        factories.make_ticket("quoted")
        backup = service.create_backup()
        service.verify_backup(backup.path)
    out = tmp_path / "args"
    show = script(tmp_path, "show", f'pwd -P > {out}\nfor a in "$@"; do printf "%s\\n" "$a" >> {out}; done\n')
    placed = procs.run("backup", "copy", backup.name, BACKUP_DIR=str(folder),
                       BACKUP_COPY_COMMAND=f"{show} {{path}} remote:itsm/{{name}} --manifest={{manifest}} '{{a,b}}'")
    assert placed.returncode == 0, placed.stderr
    here = os.path.realpath(folder)
    assert out.read_text().splitlines() == [here, str(backup.path), f"remote:itsm/{backup.name}",
                                            f"--manifest={backup.manifest_path}", "{a,b}"]
    out.unlink()
    appended = procs.run("backup", "copy", backup.name, BACKUP_DIR=str(folder),
                         BACKUP_COPY_COMMAND=f"{show} --to 'two words'")
    assert appended.returncode == 0, appended.stderr
    assert out.read_text().splitlines() == [here, "--to", "two words", str(backup.path)]
    assert "copied by show" in appended.stdout and manifest_of(backup)["copy"]["attempts"] == 2
    for where in (folder, tmp_path, ROOT, Path.home()):
        assert not list(where.glob("INJECTED*")), where


def test_a_command_that_cannot_run_is_one_line_and_keeps_the_backup(app, runner, tmp_path):
    backup = verified_backup(app)
    unexecutable = script(tmp_path, "ship", "exit 0\n", mode=0o644)
    cases = [
        ("/nonexistent/bin/rclone copy {path} remote:", "/nonexistent/bin/rclone was not found: install it"),
        ("no-such-copy-tool-here {path}", "no-such-copy-tool-here was not found on PATH"),
        (f"{unexecutable} {{path}}", "cannot be run (permission denied)"),
    ]
    for attempt, (command, says) in enumerate(cases, start=1):
        app.config["BACKUP_COPY_COMMAND"] = command
        result = runner.invoke(args=["backup", "copy", backup.name])
        assert result.exit_code == 1 and not result.stdout, result.output
        [line] = result.stderr.strip().splitlines()[-1:]
        assert line.startswith(f"Error: copying {backup.name} failed: ") and says in line, line
        assert line.endswith("the backup is kept") and "Traceback" not in result.stderr
        record = manifest_of(backup)["copy"]
        assert record["state"] == "failed" and record["attempts"] == attempt and says in record["message"]
    assert sha256_of(backup.path) == backup.manifest["sha256"] and manifest_of(backup)["verified"] is True


def test_only_a_verified_backup_with_a_command_is_copied(app, runner, redis, tmp_path):
    calls = tmp_path / "calls"
    ship = script(tmp_path, "ship", f'echo "$1" >> {calls}\n')
    with app.app_context():
        unverified = service.create_backup()
    app.config["BACKUP_COPY_COMMAND"] = f"{ship} {{path}}"
    refused = runner.invoke(args=["backup", "copy", unverified.name])
    assert refused.exit_code == 1 and "is not verified yet" in refused.stderr
    assert "flask backup verify" in refused.stderr
    missing = runner.invoke(args=["backup", "copy", "itsm-20200101T000000Z.sqlite.gz"])
    assert missing.exit_code == 1 and "no backup file" in missing.stderr
    # A verification that fails copies nothing, even after the nightly backup.
    data = bytearray(unverified.path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    unverified.path.write_bytes(bytes(data))
    with app.app_context(), pytest.raises(BackupError, match="sha256"):
        verify_backup.apply((unverified.name,), {"copy": True})
    assert not calls.exists() and "copy" not in manifest_of(unverified)
    app.config["BACKUP_COPY_COMMAND"] = None
    backup = verified_backup(app)
    unset = runner.invoke(args=["backup", "copy", backup.name])
    assert unset.exit_code == 1 and "BACKUP_COPY_COMMAND is not set" in unset.stderr
    with app.app_context():
        assert verify_backup.apply((backup.name,), {"copy": True})["copy"] is None  # nothing set: nothing to do
    assert "copy" not in manifest_of(backup) and not calls.exists()


def test_each_failed_attempt_is_told_once(app, ids, redis):
    record = {"state": "failed", "attempts": 1, "host": "db1", "message": "ship exited with status 1",
              "stderr": "AccessDenied"}
    with app.app_context():
        assert alert_backup_copy_failed("itsm-20261121T030000Z.pgdump", record) == 1
        assert alert_backup_copy_failed("itsm-20261121T030000Z.pgdump", record) == 0  # the same attempt again
        assert alert_backup_copy_failed("itsm-20261121T030000Z.pgdump", {**record, "attempts": 2}) == 1
    assert len(copy_alerts(app)) == 2


def test_the_copy_command_leads_a_session_of_its_own(tmp_path):
    """What lets a timeout kill the command's children with it, and nothing of the worker's."""
    from itsm.backups.copying import run_command

    out = tmp_path / "out"
    probe = script(tmp_path, "probe", f"echo $$ > {out}\nawk '{{print $6}}' /proc/$$/stat >> {out}\n")
    result = run_command([str(probe)], tmp_path, timeout=10)
    assert result["exit_status"] == 0 and result["message"].startswith("copied by probe"), result
    pid, sid = out.read_text().split()
    assert pid == sid and int(sid) != os.getsid(0)
