"""Processes of the stack: pid files, waiting for readiness, stopping by pid, running commands."""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .config import StackError


def log(msg: str) -> None:
    print(f"[stack] {msg}", file=sys.stderr, flush=True)


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.3)
        return s.connect_ex((host, port)) == 0


def http_get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def wait_for(
    check: Callable[[], bool],
    timeout: float,
    what: str,
    alive: Callable[[], bool] | None = None,
    log_file: Path | None = None,
    interval: float = 0.05,
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except (OSError, urllib.error.URLError, subprocess.SubprocessError):
            pass
        if alive is not None and not alive():
            raise StackError(f"{what}: process exited\n{tail(log_file)}")
        time.sleep(interval)
    raise StackError(f"{what}: not ready after {timeout:.0f}s\n{tail(log_file)}")


def tail(path: Path | None, lines: int = 40, since: int = 0) -> str:
    if path is None or not Path(path).exists():
        return ""
    with open(path, "rb") as f:
        f.seek(since)
        text = f.read().decode("utf-8", "replace")
    return f"--- last lines of {path} ---\n" + "\n".join(text.splitlines()[-lines:])


def proc_state(pid: int) -> str | None:
    """The process state letter from /proc, or None if there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def proc_gone(pid: int) -> bool:
    """True once the process has exited: no /proc entry, or a zombie whose threads have all
    ended. (A process whose main thread exited while other threads run shows state Z too, with
    its threads and sockets still alive: that is not gone.) Reaps it if it is our child."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)
    state = proc_state(pid)
    if state is None:
        return True
    if state not in ("Z", "X"):
        return False
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return True
    threads = next((line.split()[1] for line in status.splitlines() if line.startswith("Threads:")), "1")
    return int(threads) <= 1


def proc_cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
    except OSError:
        return ""


def spawn(args: list[str], cwd: Path | str, env: dict[str, str], logf: Path | str) -> subprocess.Popen:
    """A part of the stack in its own session (so it can be stopped as a group), its output
    appended to `logf`."""
    with open(logf, "ab") as out:
        return subprocess.Popen(
            args,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def run(cmd: list[str], input: str | None = None, check: bool = True, timeout: float = 60) -> str:
    r = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise StackError(f"command failed ({r.returncode}): {shlex.join(cmd)}\n{r.stdout}\n{r.stderr}")
    return r.stdout


@dataclass
class Part:
    """One process of the stack, tracked by its pid file."""

    name: str
    pidfile: Path
    marker: str  # must appear in /proc/<pid>/cmdline (guards against pid reuse)

    def pid(self) -> int | None:
        try:
            return int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None

    def alive(self) -> bool:
        pid = self.pid()
        return pid is not None and not proc_gone(pid) and self.marker in proc_cmdline(pid)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after `timeout`; returns once the process is gone."""
        stop_parts([self], timeout)


def stop_parts(parts: list[Part], timeout: float = 10.0, kill_wait: float = 10.0) -> None:
    """Stops these parts together: SIGTERM to each running one, then waits until every process
    is gone; SIGKILL to those still there after `timeout`. Returns only when all have exited
    (or raises StackError after SIGKILL + `kill_wait`), and removes their pid files."""
    pids = {}
    for part in parts:
        pid = part.pid()
        if pid is not None and part.alive():
            pids[part.name] = pid
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
    for sig, wait in ((None, timeout), (signal.SIGKILL, kill_wait)):
        if sig is not None:
            for pid in pids.values():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and not all(proc_gone(pid) for pid in pids.values()):
            time.sleep(0.02)
        if all(proc_gone(pid) for pid in pids.values()):
            break
    left = {name: pid for name, pid in pids.items() if not proc_gone(pid)}
    if left:
        raise StackError(f"still running after SIGKILL: {left}")
    for part in parts:
        with contextlib.suppress(FileNotFoundError):
            part.pidfile.unlink()
