#!/usr/bin/env python3
"""A real SMTP server for tests: accepts mail and writes each message to a directory.

    python3 tests/smtp/sink.py --dir DIR [--port 0] [--fail-first N] [--reject-rcpt ADDR]...

Prints "READY <port>" on stdout once it listens on 127.0.0.1 (--port 0 picks a free port),
then serves until killed or until its parent process exits. Each accepted message becomes
DIR/<n>.eml, numbered on after the files already there (so a sink restarted on the same
directory keeps them): the bytes received after DATA, preceded by Return-Path and
Delivered-To headers carrying the envelope. The file is written under a temporary name and
renamed, and before the "250" reply, so a client that got its "250" finds the complete file.

--fail-first N   answer the first N DATA commands with "451 4.3.0 try again later"
--reject-rcpt A  answer RCPT TO:<A> with "550 5.1.1 mailbox unavailable" (repeatable)

Needs aiosmtpd (tested with 1.4.6); when it is missing, the sink installs it with pip first
(under a file lock, so parallel tests install it once).
"""

import argparse
import asyncio
import fcntl
import os
import subprocess
import sys
import tempfile


def ensure_aiosmtpd():
    try:
        import aiosmtpd  # noqa: F401
        return
    except ImportError:
        pass
    lock_path = os.path.join(tempfile.gettempdir(), "switchboard-aiosmtpd.lock")
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            import aiosmtpd  # noqa: F401
        except ImportError:
            subprocess.run(
                [sys.executable, "-m", "pip", "install", "-q", "aiosmtpd==1.4.6"],
                check=True,
                stdout=sys.stderr,
            )
            import importlib
            importlib.invalidate_caches()


ensure_aiosmtpd()

from aiosmtpd.smtp import SMTP  # noqa: E402


class Sink:
    """The aiosmtpd handler: counts DATA commands, refuses the first N, stores the rest."""

    def __init__(self, directory, fail_first, reject):
        self.directory = directory
        self.fail_first = fail_first
        self.reject = {a.lower() for a in reject}
        self.data_commands = 0
        # A sink restarted on the same directory numbers on after what it stored before.
        self.stored = sum(1 for f in os.listdir(directory) if f.endswith(".eml"))

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.lower() in self.reject:
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.data_commands += 1
        if self.data_commands <= self.fail_first:
            return "451 4.3.0 try again later"
        self.stored += 1
        name = f"{self.stored:06d}"
        head = f"Return-Path: <{envelope.mail_from}>\r\n"
        head += "".join(f"Delivered-To: {rcpt}\r\n" for rcpt in envelope.rcpt_tos)
        tmp = os.path.join(self.directory, f".{name}.tmp")
        with open(tmp, "wb") as f:
            f.write(head.encode() + envelope.original_content)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, os.path.join(self.directory, f"{name}.eml"))
        return "250 2.0.0 OK stored as " + name


async def exit_with_parent():
    """Tests kill the sink when done; this covers a test process that died first."""
    parent = os.getppid()
    while os.getppid() == parent:
        await asyncio.sleep(0.5)
    os._exit(0)


async def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", required=True, help="where received messages go")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--fail-first", type=int, default=0, metavar="N")
    parser.add_argument("--reject-rcpt", action="append", default=[], metavar="ADDR")
    args = parser.parse_args()

    os.makedirs(args.dir, exist_ok=True)
    sink = Sink(args.dir, args.fail_first, args.reject_rcpt)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(sink, hostname="sink.test", enable_SMTPUTF8=True),
        host=args.host,
        port=args.port,
    )
    port = server.sockets[0].getsockname()[1]
    print(f"READY {port}", flush=True)
    watcher = asyncio.create_task(exit_with_parent())
    async with server:
        await server.serve_forever()
    watcher.cancel()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
