"""Copying a verified backup off this machine with BACKUP_COPY_COMMAND (rclone, aws s3 cp, scp, a script).

The command is split into words once (shell-like quoting) and run without a shell, so nothing in a path
can become a command. ``{path}``, ``{name}`` and ``{manifest}`` are replaced inside the words they stand
in; a command with none of them gets the backup's path as its last argument. It runs in BACKUP_DIR with
no input, for at most BACKUP_COPY_TIMEOUT_SECONDS: then it is killed with everything it started.

Its outcome goes into the backup's manifest under ``copy``: state (``copying``, ``copied``, ``failed``),
exit status, seconds, the last lines of its error output, the host and the number of attempts. A failure
never touches the backup itself: it stays, verified, and is marked "copy failed" until a retry copies it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from flask import current_app

from itsm.backups.store import BackupError, manifest_path, read_manifest, write_manifest
from itsm.childproc import dies_with_parent
from itsm.config import COPY_PLACEHOLDER, split_copy_command
from itsm.dbtypes import utcnow

STDERR_LINES = 20  # the last lines of the command's error output kept in the manifest ...
STDERR_CHARS = 2000  # ... and at most this much of them
STDERR_READ = 64 * 1024  # of a long output only its end is read
MESSAGE_CHARS = 300


def command_for(raw: str, path: Path) -> list[str]:
    """The argument list for copying the backup at ``path``; ValueError when ``raw`` cannot be used."""
    argv = split_copy_command(raw)
    full = os.path.abspath(path)
    values = {"{path}": full, "{name}": path.name, "{manifest}": os.path.abspath(manifest_path(path))}
    if not any(COPY_PLACEHOLDER.search(word) for word in argv):
        return [*argv, full]
    return [COPY_PLACEHOLDER.sub(lambda m: values[m.group()], word) for word in argv]


def _one_line(text: str, limit: int = MESSAGE_CHARS) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "\u2026"


def _tail(raw: bytes) -> str:
    lines = [line.rstrip() for line in raw.decode("utf-8", "replace").splitlines() if line.strip()]
    text = "\n".join(lines[-STDERR_LINES:])
    return text if len(text) <= STDERR_CHARS else "\u2026" + text[-(STDERR_CHARS - 1):]


def _stop_group(proc: subprocess.Popen) -> None:
    """Kill the command and whatever it started (its own session), and reap it."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def run_command(argv: list[str], cwd: Path, timeout: int) -> dict:
    """Run the copy command to its end or its timeout: exit_status, timed_out, seconds, stderr, message."""
    program = os.path.basename(argv[0])
    started = time.monotonic()
    # Error output goes to a file, not a pipe: a child left running cannot block reading it, and a chatty
    # tool cannot fill it.
    with tempfile.TemporaryFile() as err:
        try:
            proc = subprocess.Popen(argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=err, start_new_session=True, preexec_fn=dies_with_parent())
        except FileNotFoundError:
            where = "" if os.sep in argv[0] else " on PATH"
            return {"exit_status": None, "timed_out": False, "seconds": 0.0, "stderr": "",
                    "message": f"{argv[0]} was not found{where}: install it on this host or fix "
                               "BACKUP_COPY_COMMAND"}
        except PermissionError:
            return {"exit_status": None, "timed_out": False, "seconds": 0.0, "stderr": "",
                    "message": f"{argv[0]} cannot be run (permission denied): is it executable?"}
        except OSError as error:
            return {"exit_status": None, "timed_out": False, "seconds": 0.0, "stderr": "",
                    "message": f"{argv[0]} could not be started: {error.strerror or error}"}
        timed_out = False
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
        finally:
            # Timed out, or this job was interrupted (a soft time limit, a stop): nothing stays behind.
            if timed_out or proc.returncode is None:
                _stop_group(proc)
        seconds = round(time.monotonic() - started, 3)
        err.seek(max(0, err.seek(0, os.SEEK_END) - STDERR_READ))
        stderr = _tail(err.read())
    status = proc.returncode
    last = stderr.splitlines()[-1] if stderr else "no error output"
    if timed_out:
        message = (f"{program} did not finish within {timeout} s (BACKUP_COPY_TIMEOUT_SECONDS) and was stopped; "
                   f"its last output: {last}")
        status = None
    elif status == 0:
        message = f"copied by {program} in {seconds:.1f} s"
    elif status < 0:
        message = f"{program} was killed by {_signal_name(-status)} after {seconds:.1f} s: {last}"
    else:
        message = f"{program} exited with status {status} after {seconds:.1f} s: {last}"
    return {"exit_status": status, "timed_out": timed_out, "seconds": seconds, "stderr": stderr,
            "message": _one_line(message)}


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _store(path: Path, record: dict) -> None:
    """Put ``record`` into the manifest as read now (a verification may have written it meanwhile)."""
    try:
        manifest = read_manifest(path)
        manifest["copy"] = record
        write_manifest(path, manifest)
    except OSError as err:
        raise BackupError(f"the outcome of copying {path.name} cannot be written to its manifest: "
                          f"{err.strerror or err}") from None


@contextlib.contextmanager
def _copy_lock(path: Path):
    """Held while the backup is being copied (by this or another host sharing BACKUP_DIR); the kernel drops
    it when the copying process dies. Yields False when another copy holds it."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as err:
        raise BackupError(f"{path.name} cannot be read: {err.strerror or err}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


def copy_backup(path: Path, *, automatic: bool = False) -> dict | None:
    """Copy the backup at ``path`` off this machine and record the outcome in its manifest; returns the
    record (``state`` is ``copied`` or ``failed``).

    ``automatic`` (after the nightly verification): does nothing and returns None when no command is set,
    when the backup was copied or tried before (once per backup: later tries are by hand) or is being
    copied right now. Otherwise what prevents any attempt is a BackupError: no command, a backup that is
    not verified, a copy of it running now."""
    config = current_app.config
    raw = config.get("BACKUP_COPY_COMMAND")
    if automatic and not raw:
        return None
    manifest = read_manifest(path)
    previous = manifest.get("copy") if isinstance(manifest.get("copy"), dict) else None
    if automatic and previous:
        return None
    if not raw:
        raise BackupError(f"BACKUP_COPY_COMMAND is not set on {socket.gethostname()}: there is nothing to copy "
                          f"{path.name} with")
    if manifest.get("verified") is not True:
        state = "failed its verification" if manifest.get("verified") is False else "is not verified yet"
        raise BackupError(f"{path.name} {state}: only verified backups are copied; verify it first with "
                          f"`flask backup verify {path.name}`")
    timeout = int(config.get("BACKUP_COPY_TIMEOUT_SECONDS") or 3600)
    with _copy_lock(path) as mine:
        if not mine:
            if automatic:
                return None
            since = (previous or {}).get("started_at", "a moment ago")
            raise BackupError(f"{path.name} is being copied right now (since {since} on "
                              f"{(previous or {}).get('host', 'another host')}); wait for it to finish")
        record = {"state": "copying", "started_at": utcnow().isoformat(), "finished_at": None,
                  "host": socket.gethostname(), "attempts": int((previous or {}).get("attempts") or 0) + 1,
                  "timeout_seconds": timeout, "exit_status": None, "timed_out": False, "seconds": None,
                  "stderr": "", "message": "copying"}
        try:
            argv = command_for(raw, path)
        except ValueError as err:  # set past load_config's check (an override): told, never run
            outcome = {"message": f"BACKUP_COPY_COMMAND {err}", "seconds": 0.0}
        else:
            _store(path, record)
            try:
                outcome = run_command(argv, path.parent, timeout)
            except BaseException as exc:  # the job was stopped mid-copy (its soft time limit, a shutdown)
                record.update(state="failed", finished_at=utcnow().isoformat(),
                              message=f"the copy was interrupted ({type(exc).__name__}) and its command stopped")
                with contextlib.suppress(BackupError):
                    _store(path, record)
                raise
        record.update(outcome, finished_at=utcnow().isoformat())
        record["state"] = "copied" if record["exit_status"] == 0 and not record["timed_out"] else "failed"
        _store(path, record)
    return record

