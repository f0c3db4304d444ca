"""A real IMAP server for tests: Debian's Dovecot, run as a child process with a configuration of its own.

Nothing of the system's Dovecot is used (no /etc/dovecot, no service, no root-owned run directory): each
``ImapServer`` writes its own ``dovecot.conf`` and runs ``dovecot -F -c <conf>`` in its own process group,
listening on 127.0.0.1 on a free port, plain IMAP (no TLS), passwd-file users with plain passwords, Maildir
mail. Several can run at once (pytest-xdist workers): each has its own port and directories.

Messages go in with IMAP APPEND (IMAPClient), as a mail server delivering into a mailbox would put them
there for a fetcher. The settings are Dovecot 2.3's (Debian 12 ships 2.3.19); 2.4 renamed most of them
(``auth_allow_cleartext``, ``mail_driver``/``mail_path``, named passdbs) and is refused with a clear reason.
"""

from __future__ import annotations

import atexit
import contextlib
import grp
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from imapclient import IMAPClient, imap_utf7
from imapclient.exceptions import IMAPClientError

from tests.mailserver import reserve_port
from tests.processes import wait_for

DOVECOT = os.environ.get("DOVECOT_PATH", "/usr/sbin/dovecot")
APPENDUID_RE = re.compile(rb"\[APPENDUID (\d+) (\d+)\]")
# Dovecot refuses mail access as root ("Mail access not allowed for root"): as root, the mail belongs to nobody.
ROOT_MAIL_USER = "nobody"
# Not yet closed: closed when this process exits, since Dovecot, in a session of its own, would outlive it.
_OPEN: set[ImapServer] = set()


@atexit.register
def _close_left_open() -> None:
    for server in list(_OPEN):
        server.close()


def dovecot_version() -> str | None:
    """``dovecot --version``'s number (e.g. "2.3.19.1"), or None when Dovecot is not installed."""
    if not os.access(DOVECOT, os.X_OK):
        return None
    out = subprocess.run([DOVECOT, "--version"], capture_output=True, text=True, timeout=30).stdout
    return out.split()[0] if out.strip() else None


def unsupported(version: str | None) -> str | None:
    """Why this Dovecot cannot be used here, or None when it can."""
    if version is None:
        return f"Dovecot is not installed ({DOVECOT}; Debian package dovecot-imapd)"
    if not version.startswith("2.3."):
        return f"Dovecot {version}: this test server writes Dovecot 2.3's settings"
    return None


class ImapServer:
    """``start()``/``stop()`` as often as a test likes: it comes back on the same port with the same mail.
    ``close()`` stops it for good and removes its mail. Not listening until ``start()``; while stopped its
    port is held but not listened on, so connections are refused (a server that is down) and no other test
    process is handed that port meanwhile.

    ``tmp_path`` holds the configuration and the log (``log()``); the runtime directory (sockets, mail) is a
    short one of its own under the system's temporary directory: Unix socket paths are limited to 107 bytes,
    and as root the mail user (nobody) must be able to reach the mail, which a pytest tmp_path (0700) forbids.
    """

    def __init__(self, tmp_path: Path, users: dict[str, str] | None = None, host: str = "127.0.0.1") -> None:
        version = dovecot_version()
        if reason := unsupported(version):
            raise RuntimeError(reason)
        self.version = version
        self.host = host
        self.users: dict[str, str] = {}
        self.dir = Path(tmp_path) / f"dovecot-{os.urandom(3).hex()}"
        self.dir.mkdir(parents=True)
        self.runtime = Path(tempfile.mkdtemp(prefix="itsm-dovecot-"))
        _OPEN.add(self)
        self.runtime.chmod(0o711)  # the mail user and Dovecot's own users pass through, list nothing
        self.base_dir, self.state_dir, self.mail_dir = (self.runtime / name for name in ("run", "state", "mail"))
        for path in (self.state_dir, self.mail_dir):
            path.mkdir()
        self.passwd_file = self.runtime / "passwd"
        self.conf = self.dir / "dovecot.conf"
        self.log_path = self.dir / "dovecot.log"
        self.stderr_path = self.dir / "dovecot.stderr"
        self.mail_uid, self.mail_gid = self._mail_owner()
        os.chown(self.mail_dir, self.mail_uid, self.mail_gid)
        self.proc: subprocess.Popen | None = None
        self._reserved: socket.socket | None = reserve_port(host=host)
        self.port = self._reserved.getsockname()[1]
        for user, password in (users or {}).items():
            self.add_user(user, password)
        self.conf.write_text(self.config())

    # -- the server process

    def config(self) -> str:
        """The whole dovecot.conf: no include of the system's configuration."""
        me = pwd.getpwuid(os.getuid()).pw_name
        # As a normal user Dovecot cannot switch users: every process runs as this one (its "rootless" setup).
        # As root it keeps its defaults (dovecot, dovenull: the package's users), and the mail is nobody's.
        users = "" if os.getuid() == 0 else (
            f"default_internal_user = {me}\ndefault_internal_group = {grp.getgrgid(os.getgid()).gr_name}\n"
            f"default_login_user = {me}\n")
        return f"""\
# Written by tests/imapserver.py for one test (Dovecot {self.version}).
instance_name = itsm-test-imap-{self.port}
protocols = imap
listen = {self.host}
base_dir = {self.base_dir}
state_dir = {self.state_dir}
log_path = {self.log_path}
ssl = no
# Plain LOGIN / AUTHENTICATE PLAIN without TLS (2.4 calls it auth_allow_cleartext = yes).
disable_plaintext_auth = no
auth_mechanisms = plain login
# A wrong login answers in 0.5 s (the auth process's timer) instead of after 2 s, and without the growing
# per-address penalty (anvil-auth-penalty, below): tests of bad credentials stay fast.
auth_failure_delay = 0
{users}mail_uid = {self.mail_uid}
mail_gid = {self.mail_gid}
first_valid_uid = {self.mail_uid}
last_valid_uid = {self.mail_uid}
first_valid_gid = {self.mail_gid}
last_valid_gid = {self.mail_gid}
mail_location = maildir:~/Maildir
mail_fsync = never
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {self.passwd_file}
}}
userdb {{
  driver = static
  args = home={self.mail_dir}/%u
}}
protocol imap {{
  # The default, 10 per user and address, is less than a test with several fetchers may open.
  mail_max_userip_connections = 1000
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = {self.host}
    port = {self.port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service anvil {{
  chroot =
  unix_listener anvil-auth-penalty {{
    # mode 0: no socket, so the auth process finds no penalty service and applies none
    mode = 0
  }}
}}
"""

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 30) -> None:
        """Start Dovecot and wait until it greets on its port."""
        if self.running:
            return
        self._release()
        with self.stderr_path.open("ab") as err:
            # Its own process group: stop() ends the master and every child it forked (auth, imap, login).
            self.proc = subprocess.Popen([DOVECOT, "-F", "-c", str(self.conf)], stdin=subprocess.DEVNULL,
                                         stdout=err, stderr=subprocess.STDOUT, start_new_session=True)
        wait_for(self._greets, timeout=timeout, interval=0.02, message=f"Dovecot to greet on port {self.port}")

    def _greets(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"dovecot exited with {self.proc.returncode}:\n{self.log()}")
        try:
            with socket.create_connection((self.host, self.port), timeout=2) as s:
                return s.recv(1024).startswith(b"* OK")
        except OSError:
            return False

    def stop(self, timeout: float = 20) -> None:
        """Stop Dovecot (SIGTERM to its whole process group, SIGKILL to what outlives it) and wait until none of
        its processes is left; the port is then held again, refusing connections."""
        if self.proc is None:
            return
        pgid = self.proc.pid
        # The whole group: told alone, the master leaves an imap process serving its client for 10 s more.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
            self.proc.wait(timeout=timeout)
        try:
            wait_for(lambda: not self.group_processes(pgid), timeout=timeout, message="Dovecot's children to exit")
        except AssertionError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
            wait_for(lambda: not self.group_processes(pgid), timeout=timeout, message="Dovecot's children to die")
        self.proc = None
        try:
            self._reserved = reserve_port(self.port, self.host)
        except OSError:  # taken in between (a client's port): start() binds it again once it is free
            self._reserved = None

    @staticmethod
    def group_processes(pgid: int) -> list[int]:
        """Live (not zombie) processes of the process group ``pgid``, from /proc."""
        found = []
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                stat = Path(entry.path, "stat").read_text()
            except OSError:
                continue  # gone meanwhile
            fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) ": state, ppid, pgrp, ...
            if int(fields[2]) == pgid and fields[0] != "Z":
                found.append(int(entry.name))
        return found

    def close(self) -> None:
        """Stopped for good: the port given back, the mail and sockets removed (the log stays in tmp_path)."""
        self.stop()
        self._release()
        shutil.rmtree(self.runtime, ignore_errors=True)
        _OPEN.discard(self)

    def _release(self) -> None:
        if self._reserved is not None:
            self._reserved.close()
            self._reserved = None

    def log(self) -> str:
        """Dovecot's log, and what it printed before its log was open (configuration errors)."""
        parts = [path.read_text(errors="replace") for path in (self.stderr_path, self.log_path) if path.exists()]
        return "\n".join(part for part in parts if part)

    # -- users and mail, over IMAP

    def add_user(self, user: str, password: str) -> None:
        """Another login (also while running: Dovecot rereads the passwd-file when it changes)."""
        if any(c in user + password for c in ":\r\n") or not user:
            raise ValueError("a passwd-file user or password cannot contain ':' or a line break")
        self.users[user] = password
        self.passwd_file.write_text("".join(f"{u}:{{PLAIN}}{p}::::::\n" for u, p in self.users.items()))
        self.passwd_file.chmod(0o644)  # read by the auth process, Dovecot's own user when root

    @contextlib.contextmanager
    def client(self, user: str, timeout: float = 30) -> Iterator[IMAPClient]:
        """An IMAPClient logged in as ``user``, logged out afterwards."""
        client = IMAPClient(self.host, port=self.port, ssl=False, timeout=timeout)
        try:
            client.login(user, self.users[user])
            yield client
        finally:
            try:
                client.logout()
            except (IMAPClientError, OSError):  # cut, or the server went away: the socket is closed all the same
                with contextlib.suppress(OSError):
                    client.shutdown()

    def append(self, user: str, raw: bytes, folder: str = "INBOX", flags: Iterable[str | bytes] = ()) -> int:
        """APPEND ``raw`` to the user's folder; the message's UID (from the UIDPLUS answer)."""
        with self.client(user) as client:
            answer = client.append(folder, raw, flags=tuple(flags))
        match = APPENDUID_RE.search(answer)
        if match is None:
            raise AssertionError(f"APPEND answered without APPENDUID: {answer!r}")
        return int(match.group(2))

    def messages(self, user: str, folder: str = "INBOX") -> list[tuple[int, tuple[str, ...], bytes]]:
        """(UID, flags, raw message) of every message in the folder, by UID; reading sets no flag. ``\\Recent``
        (per session, gone in IMAP4rev2) is left out."""
        with self.client(user) as client:
            client.select_folder(folder, readonly=True)
            uids = client.search("ALL")
            if not uids:
                return []
            data = client.fetch(uids, ["FLAGS", "BODY.PEEK[]"])
        return [(uid, tuple(flag.decode() for flag in data[uid][b"FLAGS"] if flag != b"\\Recent"),
                 data[uid][b"BODY[]"]) for uid in sorted(data)]

    def create_folder(self, user: str, name: str) -> None:
        with self.client(user) as client:
            client.create_folder(name)
            client.subscribe_folder(name)

    def uidvalidity(self, user: str, folder: str = "INBOX") -> int:
        with self.client(user) as client:
            return client.folder_status(folder, [b"UIDVALIDITY"])[b"UIDVALIDITY"]

    def reset_uidvalidity(self, user: str, folder: str = "INBOX") -> int:
        """The folder as after a server rebuild or a restore: the same messages (and flags), a new UIDVALIDITY,
        UIDs counted anew from 1. Returns the new UIDVALIDITY.

        Dovecot keeps the UIDs of a Maildir in ``dovecot-uidlist`` and its indexes; without them it rescans the
        folder and gives it a new UIDVALIDITY. Done with no session in the folder: a client that has it
        selected keeps its old view until it selects again (as after a real rebuild it would reconnect).
        """
        old = self.uidvalidity(user, folder)
        path = self._maildir(user, folder)
        for name in ("dovecot-uidlist", "dovecot.index", "dovecot.index.log", "dovecot.index.log.2",
                     "dovecot.index.cache"):
            with contextlib.suppress(FileNotFoundError):
                (path / name).unlink()
        root = self._maildir(user, "INBOX")
        for listed in root.glob("dovecot.list.index*"):  # the folder list caches each folder's UIDVALIDITY
            listed.unlink()
        new = self.uidvalidity(user, folder)
        if new == old:
            raise AssertionError(f"UIDVALIDITY of {user} {folder} stayed {old} (Dovecot {self.version})")
        return new

    def _maildir(self, user: str, folder: str) -> Path:
        root = self.mail_dir / user / "Maildir"
        if folder.upper() == "INBOX":
            return root
        # Maildir++ (hierarchy separator "."): folder "Archive.2024" is the directory ".Archive.2024", named in
        # modified UTF-7.
        return root / ("." + imap_utf7.encode(folder).decode())

    # -- helpers

    def _mail_owner(self) -> tuple[int, int]:
        if os.getuid() != 0:
            return os.getuid(), os.getgid()
        nobody = pwd.getpwnam(ROOT_MAIL_USER)
        return nobody.pw_uid, nobody.pw_gid

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<ImapServer Dovecot {self.version} {self.host}:{self.port} {state}>"

