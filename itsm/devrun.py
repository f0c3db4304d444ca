"""``make run``: the whole development session in one process, so that what it starts stops with it and
every reason it cannot start is one line, printed before anything runs.

In order: the settings (``.env`` read as ``flask`` commands read it); Redis: REDIS_URL when the user set it
(it must answer), else what answers at the default URL, else a Redis of the session's own (itsm.localredis;
LOCAL_REDIS=system or embedded picks one even when the default answers); the database; the web and mail
sink ports; then ``flask db upgrade``, ``flask demo seed`` and ``flask schedules sync``; the summary; and
the Procfile's processes under honcho. When honcho has stopped them all, the session's Redis is stopped,
last, so the worker and scheduler never lose it while they stop. When a process stops on its own (it could
not start), honcho stops the others and the last line printed says which one and why."""

from __future__ import annotations

import argparse
import errno
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import click
from flask.cli import load_dotenv
from honcho.environ import expand_processes, parse, parse_procfile
from honcho.manager import SYSTEM_PRINTER_NAME, Manager
from honcho.printer import Printer
from redis import Redis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from itsm.app import create_app
from itsm.extensions import redis_client
from itsm.localredis import CHOICES, LocalRedis, LocalRedisError, choose_server
from jobs.cli import require_database, require_redis

DEMO_LOGINS = (("demo admin login", "admin@example.com / demo-admin-pass"),
               ("demo agent login", "agent@example.com / demo-agent-pass"))
STEPS = (("db", "upgrade"), ("demo", "seed"), ("schedules", "sync"))


class Stop(Exception):
    """make run cannot go on; the message is one line."""


def shown_url(url: str) -> str:
    """A Redis URL fit to print: its password hidden."""
    return re.sub(r"(//[^:/@]*:)[^@/]*@", r"\1***@", url)


def answers(url: str) -> bool:
    client = Redis.from_url(url, socket_connect_timeout=1, socket_timeout=2, retry=Retry(NoBackoff(), 0))
    try:
        return bool(client.ping())
    except RedisError:
        return False
    finally:
        client.close()


def choose_redis(app, choice: str) -> tuple[str, LocalRedis | None]:
    """(what the summary says about Redis, the session's own Redis or None); the chosen URL is then in
    the environment every later process gets."""
    if choice not in CHOICES:
        raise Stop(f"LOCAL_REDIS must be one of {', '.join(CHOICES)}, got {choice!r}")
    url = app.config["REDIS_URL"]
    if os.environ.get("REDIS_URL"):
        if choice != "auto":
            raise Stop(f"LOCAL_REDIS={choice} starts a Redis of make run's own, but REDIS_URL is set: "
                       "unset one of them")
        with app.app_context():
            try:
                require_redis()  # the user's own Redis: make run never starts another in its place
            except click.ClickException as err:
                raise Stop(f"{err.message}; start it, or unset REDIS_URL and make run starts one") from None
            finally:
                redis_client(app).close()
        return f"yours at {shown_url(url)}", None
    if choice == "auto" and answers(url):
        return f"yours at {shown_url(url)}", None
    try:
        local = LocalRedis(choose_server(choice), Path(app.instance_path) / "redis")
        local.start()
    except LocalRedisError as err:
        raise Stop(str(err)) from None
    os.environ["REDIS_URL"] = local.url
    return f"{local.server.label} on port {local.port} (REDIS_URL={local.url} for other commands)", local


def require_free_port(host: str, port: int, what: str, setting: str) -> None:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gunicorn and the sink bind
        try:
            s.bind((host, port))
        except OSError as err:
            hint = (f": is another make run running? `make run {setting}=...` picks another port"
                    if err.errno == errno.EADDRINUSE else "")
            raise Stop(f"{what} cannot listen on {host}:{port} ({err.strerror or err}){hint}") from None


class WatchingPrinter(Printer):
    """honcho's printer, which also remembers each process's last line and which process stopped first."""

    STOPPED = re.compile(r"(\S+) stopped \(rc=(-?\d+)\)")

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.last_line: dict[str, str] = {}
        self.signalled = False
        self.first_stopped: tuple[str, int] | None = None

    def write(self, message) -> None:
        super().write(message)
        data = message.data.decode("utf-8", "replace") if isinstance(message.data, bytes) else message.data
        lines = [line.strip() for line in data.splitlines() if line.strip()]
        if not lines:
            return
        if message.name != SYSTEM_PRINTER_NAME:
            self.last_line[message.name] = lines[-1]
        elif lines[-1].endswith(" received"):  # SIGINT or SIGTERM: stopped on purpose
            self.signalled = True
        elif (stopped := self.STOPPED.match(lines[-1])) and self.first_stopped is None and not self.signalled:
            self.first_stopped = (stopped[1], int(stopped[2]))

    def why(self) -> str | None:
        """One line on the process that stopped by itself and took the others down, if one did."""
        if self.first_stopped is None:
            return None
        name, code = self.first_stopped
        line = self.last_line.get(name, "it printed nothing").removeprefix("Error: ")
        return f"{name} stopped (exit status {code}), so make run stopped every process: {line}"


def run_processes(names: list[str], port: int) -> int:
    """``honcho start --port PORT NAMES...``, watching why it stops."""
    procfile = parse_procfile(Path("Procfile").read_text())
    dotenv = parse(Path(".env").read_text()) if Path(".env").is_file() else {}  # honcho's own .env reading
    printer = WatchingPrinter(sys.stdout)
    manager = Manager(printer)
    for process in expand_processes({name: procfile.processes[name] for name in names}, env=dotenv, port=port):
        manager.add_process(process.name, process.cmd, quiet=process.quiet, env={**os.environ, **process.env})
    manager.loop()
    why = printer.why()
    if why is not None and not printer.signalled:
        print(f"Error: {why}", file=sys.stderr, flush=True)
    return manager.returncode or 0


def summary(host: str, port: int, mail_sink_port: int | None, redis: str) -> list[str]:
    everywhere = host == "0.0.0.0"  # noqa: S104  (HOST=0.0.0.0 is the user's explicit choice)
    url = f"http://{'127.0.0.1' if everywhere else host}:{port}/" + ("   (on every interface)" if everywhere else "")
    rows = [("itsm is starting at", url), *((f"{label}:", value) for label, value in DEMO_LOGINS)]
    if mail_sink_port is not None:
        rows.append(("emails:", f"a local sink on port {mail_sink_port}; read them on /admin/outbox"))
    rows.append(("redis:", redis))
    return ["", *(f"  {label:21} {value}" for label, value in rows), "  stop with Ctrl-C", ""]


def session(args) -> int:
    load_dotenv()  # .env and .flaskenv, as every `flask` command and honcho read them
    app = create_app()  # a wrong setting stops here, in one line (ConfigError)
    redis_text, local = choose_redis(app, args.local_redis)
    try:
        with app.app_context():
            try:
                require_database(migrated=False)  # `flask db upgrade` creates the tables
            except click.ClickException as err:
                raise Stop(err.message) from None
        require_free_port(args.host, args.port, "the web server", "PORT")
        sink = None
        if not os.environ.get("MAIL_SERVER"):
            # Without a mail server of the user's, email goes to the development sink, shown on the outbox page.
            sink = args.mail_sink_port
            require_free_port("127.0.0.1", sink, "the mail sink", "MAIL_SINK_PORT")
            os.environ.update(MAIL_SERVER="127.0.0.1", MAIL_PORT=str(sink),
                              MAIL_SINK_DIR=str(Path(app.instance_path) / "mail-sink"))
        venv_bin = str(Path(sys.executable).parent)
        os.environ["PATH"] = venv_bin + os.pathsep + os.environ.get("PATH", "")
        for step in STEPS:
            print("flask", *step, flush=True)
            code = subprocess.run([os.path.join(venv_bin, "flask"), *step], check=False).returncode
            if code != 0:
                raise Stop(f"`flask {' '.join(step)}` failed (exit status {code}, its reason above); "
                           "nothing was started")
        print("\n".join(summary(args.host, args.port, sink, redis_text)), flush=True)
        names = ["web", "worker", "scheduler"] + (["mailsink"] if sink is not None else [])
        return run_processes(names, args.port)
    finally:
        if local is not None:
            # Ctrl-C again meanwhile must not leave it running: stopping it takes a moment (it saves its data).
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            local.stop()
            print(f"{local.server.label} on port {local.port} stopped", flush=True)


def _stopped_by_signal(signum, frame):
    raise SystemExit(128 + signum)  # unwinds through session()'s finally: its Redis is stopped


class OneLineParser(argparse.ArgumentParser):
    def error(self, message: str):
        self.exit(2, f"Error: {message}\n")  # a bad PORT=... is one line, as everywhere else


def tcp_port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = 0
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"a port is a whole number from 1 to 65535, got {text!r}")
    return port


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(prog="make run", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=tcp_port, default=5000)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--mail-sink-port", type=tcp_port, default=1025)
    parser.add_argument("--local-redis", default=os.environ.get("LOCAL_REDIS") or "auto",
                        help=f"{', '.join(CHOICES)}: which Redis make run starts when REDIS_URL is not set")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _stopped_by_signal)
    try:
        return session(args)
    except Stop as err:
        print(f"Error: {err}", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
