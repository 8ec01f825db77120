"""Start and stop the servers a benchmark compares, each on a free loopback port."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

BIN = Path(sys.executable).parent


PORT_RANGE: range | None = None  # ports to pick from (any free port when None)


def free_port() -> int:
    for port in PORT_RANGE or [0]:
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return sock.getsockname()[1]
    raise RuntimeError(f"no free port in {PORT_RANGE}")


def wait_ready(url: str, process: subprocess.Popen, seconds: float = 120.0) -> float:
    """Seconds until `url` answers 200."""
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        if process.poll() is not None:
            raise RuntimeError(f"server exited early ({process.returncode}): {process.args}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return time.perf_counter() - started
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.05)
    raise RuntimeError(f"{url} not ready after {seconds} s")


class Server:
    def __init__(self, name: str, args: list[str], ready_path: str, port: int) -> None:
        self.name = name
        self.base = f"http://127.0.0.1:{port}"
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            self.startup = wait_ready(self.base + ready_path, self.process)
        except BaseException:  # a server that never got ready must not outlive the run
            self.stop()
            raise

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def cmpkg(name: str, *args: str) -> Server:
    port = free_port()
    command = [str(BIN / "cmpkg"), "serve", "--port", str(port), "--log-level", "WARNING", *args]
    server = Server(name, command, "/readyz", port)
    server.endpoint = server.base + "/sparql"  # type: ignore[attr-defined]
    return server


def oxigraph(name: str, *args: str) -> Server:
    binary = BIN / "oxigraph"
    if not binary.exists():
        binary = Path(shutil.which("oxigraph") or "oxigraph")
    port = free_port()
    command = [str(binary), "serve", "--bind", f"127.0.0.1:{port}", *args]
    server = Server(name, command, "/query?query=ASK%7B%7D", port)
    server.endpoint = server.base + "/query"  # type: ignore[attr-defined]
    return server
