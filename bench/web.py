"""The web viewer's pages on a big store: time to first byte and to the whole response for
the sessions page (newest, and a page deep in by the `before` cursor) on a store of 100,000
sessions, and for the page of a 10,000-event session (gen_stream.py's, 0.4 shapes); then
the time to a rendered page (headless Chromium through Playwright, navigation to `load`)
for the newest sessions page and the 10,000-event session.

The store is built once through the daemon into bench/out/web.db and reused while its stamp
matches. The viewer is the real `python -m sidecar web --port 0` process; requests go over
loopback with the cookie its token gives. Target (issue 15): the 10,000-event page < 1 s.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode, urlsplit

from common import GEN_STREAM, OUT, count_rows, feed, median, renamed, repeat_option, report, stream, verdict

CHROMIUM = Path("/usr/bin/chromium")
SESSIONS = 100_000
BIG = 10_000
STAMP = f"sessions={SESSIONS} big={BIG} v3"
USAGE = {
    "latency": 900,
    "input_tokens": 1000,
    "output_tokens": 200,
    "cache_write_tokens": 0,
    "cache_read_tokens": 0,
}


def small_sessions() -> Iterator[bytes]:
    """SESSIONS sessions of four events (init, prompt, response, stop), a second apart."""
    for k in range(SESSIONS):
        sid = f"web-{k:06d}"
        minute, second = divmod(k, 60)
        hour, minute = divmod(minute, 60)
        stamp = f"2026-06-{1 + hour // 24:02d}T{hour % 24:02d}:{minute:02d}:{second:02d}.{k % 1000:03d}Z"
        for method, params in (
            (
                "session.init",
                {"model": f"model-{k % 7}", "provider": "bench", "system": "s", "init_type": "Start"},
            ),
            ("user.prompt.submit", {"turn_id": "t1", "prompt": f"question number {k} about the storage"}),
            ("assistant.response", {"turn_id": "t1", "full_text": f"answer **{k}**", "tool_calls": None}),
            (
                "session.stop",
                {"success": k % 5 != 0, "result": "done", "error": None, "usage": USAGE},
            ),
        ):
            message = {
                "jsonrpc": "2.0",
                "method": method,
                "params": {"session_id": sid, **params, "timestamp": stamp},
            }
            yield json.dumps(message, separators=(",", ":")).encode() + b"\n"


def produce(big: Path) -> Iterator[bytes]:
    yield from small_sessions()
    yield from renamed(big, b"big-")


def build_store() -> tuple[Path, str]:
    """bench/out/web.db and the id of its 10,000-event session."""
    big = stream(1, BIG, name="one_session_10k.ndjson")
    big_id = "big-" + json.loads(big.open("rb").readline())["params"]["session_id"]
    db = OUT / "web.db"
    stamp_path = db.with_name(db.name + ".stamp")
    generator = hashlib.sha256(GEN_STREAM.read_bytes()).hexdigest()
    stamp = f"{STAMP} {generator} {big.stat().st_size}"
    if db.exists() and stamp_path.exists() and stamp_path.read_text() == stamp:
        return db, big_id
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    print(f"building {db.name}: {SESSIONS:,} sessions and one of {BIG:,} events through the daemon ...")
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "sidecar", "--db", str(db)], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL
    )
    assert proc.stdin is not None
    producer = threading.Thread(target=feed, args=(proc.stdin, produce(big)))
    producer.start()
    producer.join()
    if proc.wait() != 0:
        raise SystemExit(f"daemon exited {proc.returncode} while building the store")
    print(f"  {count_rows(db):,} events in {time.perf_counter() - start:.0f} s", flush=True)
    stamp_path.write_text(stamp)
    return db, big_id


class Viewer:
    """The viewer process and a signed-in connection to it."""

    def __init__(self, db: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sidecar", "--db", str(db), "web", "--port", "0"], stdout=subprocess.PIPE
        )
        assert self.proc.stdout is not None
        self.url = self.proc.stdout.readline().decode().strip()
        url = urlsplit(self.url)
        self.host, self.port = url.hostname or "127.0.0.1", url.port or 0
        answer = self._get(f"/?{url.query}", {})
        self.cookie = answer[2].split(";", 1)[0]

    def _get(self, path: str, headers: dict[str, str]) -> tuple[float, float, str]:
        """(seconds to the first byte, to the whole response, the set-cookie header)."""
        connection = http.client.HTTPConnection(self.host, self.port, timeout=60)
        start = time.perf_counter()
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        first = time.perf_counter() - start
        body = response.read()
        whole = time.perf_counter() - start
        connection.close()
        assert response.status in (200, 303), (response.status, body[:200])
        return first, whole, response.getheader("set-cookie") or ""

    def get(self, path: str) -> tuple[float, float, int]:
        connection = http.client.HTTPConnection(self.host, self.port, timeout=60)
        start = time.perf_counter()
        connection.request("GET", path, headers={"Cookie": self.cookie})
        response = connection.getresponse()
        first = time.perf_counter() - start
        body = response.read()
        whole = time.perf_counter() - start
        connection.close()
        assert response.status == 200, (response.status, body[:200])
        return first, whole, len(body)

    def close(self) -> None:
        self.proc.terminate()
        if self.proc.wait(30) != 0:
            raise SystemExit(f"the viewer exited {self.proc.returncode}")


def rendered(viewer: Viewer, paths: dict[str, str], repeat: int) -> dict[str, float] | None:
    """Seconds from navigation to `load` in headless Chromium (Playwright), median of
    `repeat` after one warm-up, per page; None without Playwright or /usr/bin/chromium."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return None
    if not CHROMIUM.exists():
        return None
    origin = f"http://{viewer.host}:{viewer.port}"
    found: dict[str, float] = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM))
        page = browser.new_context().new_page()
        page.goto(viewer.url)  # the token becomes the context's cookie
        for label, path in paths.items():
            page.goto(origin + path, wait_until="load", timeout=120_000)
            runs = []
            for _ in range(repeat):
                start = time.perf_counter()
                page.goto(origin + path, wait_until="load", timeout=120_000)
                runs.append(time.perf_counter() - start)
            found[label] = median(runs)
        browser.close()
    return found


def main() -> None:
    repeat = repeat_option(__doc__ or "", 5)
    db, big_id = build_store()
    viewer = Viewer(db)
    try:
        pages = {
            f"sessions page, newest ({SESSIONS:,} sessions)": "/",
            "sessions page, deep by the before cursor": "/?" + urlencode({"before": "2026-06-01T12:00:00Z"}),
            "sessions page, filtered by model and status": "/?model=model-3&status=stopped",
            f"session page, {BIG:,} events": "/session?" + urlencode({"id": big_id}),
        }
        rows = []
        slowest_big = 0.0
        for label, path in pages.items():
            viewer.get(path)  # warm: the first read of a page fills the page cache
            runs = [viewer.get(path) for _ in range(repeat)]
            first, whole = median([r[0] for r in runs]), median([r[1] for r in runs])
            rows.append(
                (
                    label,
                    f"first byte {first * 1000:.0f} ms, whole {whole * 1000:.0f} ms, {runs[0][2]:,} bytes",
                )
            )
            if "events" in label:
                slowest_big = max(r[1] for r in runs)
        report(f"web viewer, median of {repeat}", rows)
        verdict(f"slowest {BIG:,}-event page, whole response (s)", slowest_big, "< 1 s", slowest_big < 1.0)
        big_label = f"session page, {BIG:,} events"
        shown = {label: pages[label] for label in (next(iter(pages)), big_label)}
        loads = rendered(viewer, shown, repeat)
        if loads is None:
            print("  (no Playwright or no /usr/bin/chromium: time to a rendered page not measured)")
        else:
            report(
                f"time to a rendered page (Chromium, navigation to load), median of {repeat}",
                [(label, f"{seconds * 1000:.0f} ms") for label, seconds in loads.items()],
            )
            verdict(f"{BIG:,}-event page rendered (s)", loads[big_label], "< 1 s", loads[big_label] < 1.0)
    finally:
        viewer.close()


if __name__ == "__main__":
    main()
