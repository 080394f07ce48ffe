"""A minimal headless-Chromium driver for the report tests: the Chrome DevTools Protocol over a
websocket (aiohttp's client), no browser-automation package and no browser download.

`open_page(path)` starts Debian's `chromium` with the flags CI uses, a fresh empty profile and
`--remote-debugging-port=0`, reads the port it picked from `DevToolsActivePort`, opens a new
target, enables the Runtime/Log/Network/Page domains, loads the file and waits for the load
event. The returned `Page` has recorded every console error, uncaught exception, error log entry
and requested URL since before navigation; `evaluate` runs JavaScript in the page and
`screenshot` captures PNG bytes. Leaving the `with` block closes the browser and kills the
process group it started.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run",
)
INSTALL_HINT = "chromium is not installed: run `make test`, which installs Debian's chromium package (apt-get) when it is absent"


def chromium_path() -> str | None:
    return os.environ.get("RUBRIC_JUDGE_CHROMIUM") or shutil.which("chromium")


@dataclass
class Events:
    console_errors: list[str] = field(default_factory=list)
    exceptions: list[str] = field(default_factory=list)
    log_errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)

    @property
    def errors(self) -> list[str]:
        return self.console_errors + self.exceptions + self.log_errors


class _Session:
    """One CDP websocket, driven on a private event loop thread so the tests stay synchronous."""

    def __init__(self, ws_url: str):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="cdp", daemon=True)
        self.thread.start()
        self.next_id = 0
        self.pending: dict[int, asyncio.Future] = {}
        self.listeners: list[Any] = []
        self.events = Events()
        self.load_fired = threading.Event()
        self._call(self._connect(ws_url), 20)

    def _call(self, coro, timeout: float) -> Any:
        future: Future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result(timeout)

    async def _connect(self, ws_url: str) -> None:
        import aiohttp

        self.http = aiohttp.ClientSession()
        # Screenshots of a long page are large base64 strings: no message size limit.
        self.ws = await self.http.ws_connect(ws_url, max_msg_size=0)
        self.reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        async for message in self.ws:
            data = json.loads(message.data)
            if "id" in data and data["id"] in self.pending:
                self.pending.pop(data["id"]).set_result(data)
            elif "method" in data:
                self._event(data["method"], data.get("params", {}))

    def _event(self, method: str, params: dict[str, Any]) -> None:
        events = self.events
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            events.console_errors.append(" ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", [])))
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            events.exceptions.append(details.get("exception", {}).get("description") or details.get("text", "exception"))
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            entry = params["entry"]
            events.log_errors.append(f"{entry.get('source')}: {entry.get('text')} {entry.get('url', '')}".strip())
        elif method == "Network.requestWillBeSent":
            events.requests.append(params.get("request", {}).get("url", ""))
        elif method == "Page.loadEventFired":
            self.load_fired.set()

    async def _send(self, method: str, params: dict[str, Any] | None, session_id: str | None) -> dict[str, Any]:
        self.next_id += 1
        message: dict[str, Any] = {"id": self.next_id, "method": method, "params": params or {}}
        if session_id:
            message["sessionId"] = session_id
        future = self.loop.create_future()
        self.pending[self.next_id] = future
        await self.ws.send_str(json.dumps(message))
        return await future

    def send(self, method: str, params: dict[str, Any] | None = None, session_id: str | None = None, timeout: float = 30) -> dict[str, Any]:
        reply = self._call(self._send(method, params, session_id), timeout)
        if "error" in reply:
            raise RuntimeError(f"CDP {method} failed: {reply['error']}")
        return reply.get("result", {})

    def close(self) -> None:
        async def shut() -> None:
            with contextlib.suppress(Exception):
                await self.ws.close()
            await self.http.close()

        with contextlib.suppress(Exception):
            self._call(shut(), 10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


class Page:
    def __init__(self, session: _Session, session_id: str):
        self.session, self.session_id = session, session_id

    @property
    def events(self) -> Events:
        return self.session.events

    def send(self, method: str, params: dict[str, Any] | None = None, timeout: float = 30) -> dict[str, Any]:
        return self.session.send(method, params, self.session_id, timeout)

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (JSON-serialisable results only)."""
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True})
        if "exceptionDetails" in result:
            raise RuntimeError(f"JavaScript failed: {result['exceptionDetails']}")
        return result.get("result", {}).get("value")

    def screenshot(self, full_page: bool = False, max_height: int = 16000) -> bytes:
        params: dict[str, Any] = {"format": "png"}
        if full_page:
            height = min(int(self.evaluate("document.documentElement.scrollHeight")), max_height)
            width = int(self.evaluate("document.documentElement.clientWidth"))
            params.update(captureBeyondViewport=True, clip={"x": 0, "y": 0, "width": width, "height": height, "scale": 1})
        return base64.b64decode(self.send("Page.captureScreenshot", params, timeout=60)["data"])


@contextlib.contextmanager
def open_page(path: Path, width: int = 1400, height: int = 1000, settle_s: float = 0.3) -> Iterator[Page]:
    """Chromium showing the file at `path`; raises RuntimeError with INSTALL_HINT when chromium is absent."""
    executable = chromium_path()
    if executable is None:
        raise RuntimeError(INSTALL_HINT)
    profile = Path(tempfile.mkdtemp(prefix="rj-chromium-"))
    # stderr to a file: chromium logs freely, and a full pipe nobody reads would stall it.
    log = open(profile.with_name(profile.name + ".log"), "w+b")  # noqa: SIM115 - closed in finally
    process = subprocess.Popen(
        [executable, *FLAGS, f"--user-data-dir={profile}", "--remote-debugging-port=0", f"--window-size={width},{height}",
         "--hide-scrollbars", "--mute-audio", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=log, start_new_session=True,
    )
    session = None
    try:
        ws_url = _devtools_url(profile, process, log)
        session = _Session(ws_url)
        target = session.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session_id = session.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        page = Page(session, session_id)
        for domain in ("Runtime", "Log", "Network", "Page"):
            page.send(f"{domain}.enable")
        page.send("Emulation.setDeviceMetricsOverride", {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})
        session.load_fired.clear()
        reply = page.send("Page.navigate", {"url": Path(path).resolve().as_uri()})
        if reply.get("errorText"):
            raise RuntimeError(f"navigation failed: {reply['errorText']}")
        if not session.load_fired.wait(60):
            raise RuntimeError("the page did not finish loading within 60 s")
        time.sleep(settle_s)  # late console errors (e.g. from a deferred script) still count
        yield page
    finally:
        if session is not None:
            with contextlib.suppress(Exception):
                session.send("Browser.close", timeout=5)
            session.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(5)
        # Renderer and zygote processes share the browser's process group (this function
        # started it with a new session): kill that group, and nothing else.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(5)
        log.close()
        Path(log.name).unlink(missing_ok=True)
        shutil.rmtree(profile, ignore_errors=True)


def _devtools_url(profile: Path, process: subprocess.Popen, log) -> str:
    port_file = profile / "DevToolsActivePort"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log.seek(0)
            stderr = log.read().decode(errors="replace")[-2000:]
            raise RuntimeError(f"chromium exited with code {process.returncode} before opening DevTools:\n{stderr}")
        if port_file.exists():
            lines = port_file.read_text().split()
            if len(lines) >= 2:
                return f"ws://127.0.0.1:{lines[0]}{lines[1]}"
        time.sleep(0.05)
    raise RuntimeError("chromium did not write DevToolsActivePort within 30 s")
