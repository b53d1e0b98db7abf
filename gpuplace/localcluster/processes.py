"""Child processes of the local control plane: start, wait until ready, stop.

Every process writes stdout and stderr to its own log file; when it fails to start, the error
carries the tail of that log, because "exited with status 1" alone is useless.

Stopping is by PID only (terminate, wait, kill) and only for processes started here. Children run
in their own session so that a Ctrl-C in the terminal reaches the Python parent, which then stops
them in order (scheduler before apiserver before etcd). On Linux they also get a parent-death
signal, so a parent killed with SIGKILL does not leave an apiserver and etcd running.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

_PR_SET_PDEATHSIG = 1
_LOG_TAIL_LINES = 60


class ProcessStartError(RuntimeError):
    """A child process exited or did not become ready; the message ends with its log tail."""

    def __init__(self, name: str, reason: str, log_file: Path) -> None:
        self.name = name
        self.log_file = log_file
        self.log_tail = tail(log_file)
        super().__init__(
            f"{name}: {reason} (log: {log_file})\n--- last lines of the log ---\n{self.log_tail}"
        )

    @property
    def port_clash(self) -> bool:
        """True when the process lost a race for its port with another process on the machine."""
        return "address already in use" in self.log_tail.lower()


def tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "<no log>"
    return "\n".join(text.splitlines()[-lines:])


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now (the caller races anyone else for it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pdeathsig_hook() -> Callable[[], None] | None:
    # PR_SET_PDEATHSIG fires when the *thread* that forked exits, so only use it from the main thread.
    if not sys.platform.startswith("linux") or threading.current_thread() is not threading.main_thread():
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl  # resolved before fork: no allocation in the child
    except (OSError, AttributeError):
        return None

    def hook() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)

    return hook


@dataclass
class ManagedProcess:
    name: str
    argv: list[str]
    log_file: Path
    popen: subprocess.Popen[bytes]
    ready_url: str | None = None
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, wait up to ``timeout``, then SIGKILL. Returns the exit status."""
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.popen.terminate()
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    self.popen.kill()
                self.popen.wait(timeout)
        return self.popen.returncode


def spawn(
    name: str,
    argv: Sequence[str],
    *,
    log_file: Path,
    env: Mapping[str, str | None] | None = None,
    cwd: Path | None = None,
) -> ManagedProcess:
    """Start ``argv`` in its own session, output to ``log_file``. ``env`` values of None remove a variable."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    full_env = dict(os.environ)
    for key, value in (env or {}).items():
        if value is None:
            full_env.pop(key, None)
        else:
            full_env[key] = value
    with log_file.open("ab") as log:
        log.write(f"+ {' '.join(argv)}\n".encode())
        log.flush()
        popen = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=full_env,
            cwd=cwd,
            start_new_session=True,
            preexec_fn=_pdeathsig_hook(),  # noqa: PLW1509 - only calls prctl
        )
    return ManagedProcess(name=name, argv=list(argv), log_file=log_file, popen=popen)


def probe(
    url: str,
    *,
    ca_file: Path | None = None,
    token: str | None = None,
    insecure: bool = False,
    timeout: float = 2.0,
) -> tuple[int, str]:
    """GET ``url``; returns (status, body). Connection errors return status 0."""
    context: ssl.SSLContext | None = None
    if url.startswith("https://"):
        if insecure:
            context = ssl._create_unverified_context()  # local test servers only
        else:
            context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
            return int(response.status), response.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read().decode(errors="replace")
    except (urllib.error.URLError, OSError):
        return 0, ""


def wait_ready(
    process: ManagedProcess,
    url: str,
    *,
    timeout: float,
    ca_file: Path | None = None,
    token: str | None = None,
    insecure: bool = False,
) -> None:
    """Poll ``url`` until it answers 200; raise ProcessStartError if the process dies or time runs out."""
    deadline = time.monotonic() + timeout
    last = (0, "")
    while time.monotonic() < deadline:
        if not process.alive():
            raise ProcessStartError(
                process.name, f"exited with status {process.popen.returncode} before ready", process.log_file
            )
        last = probe(url, ca_file=ca_file, token=token, insecure=insecure)
        if last[0] == 200:
            return
        time.sleep(0.2)
    reason = f"not ready after {timeout:.0f}s at {url} (last answer {last[0]}: {last[1][-500:]!r})"
    raise ProcessStartError(process.name, reason, process.log_file)
