"""The switch's side of a run: its Prometheus /metrics, read once a second by the parent.

`--admin-url` names the switch's admin API (docs/admin.md; /metrics needs no token). The
parent process reads it, off the sending path: the workers never wait for it. A reading
holds the switch's counters (totals since it started); the series is made of the
differences between one reading and the last good one: decisions per second per channel,
response codes, decision p50/p99 from the histogram's bucket deltas, in flight, Redis
calls per pipelined write, late answers. A reading that fails (no answer within the
timeout, not Prometheus text) is a gap in the series and is counted; it never fails the run.

The generator must not import switch/, so it speaks plain HTTP/1.0 itself and reads the
text exposition with the small parser below (prometheus-client's would cost every spawned
worker a tenth of a second to import; tests/test_loadtest_switch_side.py checks the two
agree on the switch's own page).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
import urllib.parse

import msgspec

SCRAPE_INTERVAL_S = 1.0
SCRAPE_TIMEOUT_S = 0.8  # a reading never runs into the next one
SCRAPE_BODY_MAX_BYTES = 4 << 20  # /metrics is a few KiB; more is not the switch's page
ERRORS_KEPT = 5  # distinct reasons of failed readings shown in the report

# name{label="value",...} value  (the text exposition's sample line; timestamps not used)
SAMPLE = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\S+)?")
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
ESCAPES = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}


class ScrapeError(Exception):
    """A reading that did not give the switch's metrics (why, in words)."""


def parse_samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    """The text exposition's samples: (name, labels, value); ScrapeError on a bad line."""
    samples = []
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        match = SAMPLE.fullmatch(line.strip())
        if match is None:
            raise ScrapeError(f"not Prometheus text: {line[:60]!r}")
        name, labels, value = match.groups()
        try:
            number = float(value)
        except ValueError:
            raise ScrapeError(f"not a number: {line[:60]!r}") from None
        found = {key: re.sub(r"\\[\\\"n]", lambda e: ESCAPES[e.group()], raw)
                 for key, raw in LABEL.findall(labels or "")}
        samples.append((name, found, number))
    return samples


class Reading(msgspec.Struct, kw_only=True):
    """The switch's counters at one moment (totals since it started, but `inflight`)."""

    at_s: float  # wall clock (time.time()) when the answer came
    requests: dict[str, float]  # channel -> answers with a decision
    refused: dict[str, float]  # channel -> frames its codec answered itself
    codes: dict[str, float]  # response code -> answers with it
    buckets: dict[str, float]  # decision time's upper bound ("+Inf" too) -> cumulative count
    inflight: float
    redis_calls: float
    redis_batches: float
    late: float


def reading_of(samples: list[tuple[str, dict[str, str], float]], at_s: float) -> Reading:
    reading = Reading(at_s=at_s, requests={}, refused={}, codes={}, buckets={}, inflight=0.0,
                      redis_calls=0.0, redis_batches=0.0, late=0.0)
    totals = {"switch_redis_calls_total": "redis_calls",
              "switch_redis_batches_total": "redis_batches",
              "switch_answers_late_total": "late", "switch_inflight": "inflight"}
    for name, labels, value in samples:
        if name == "switch_requests_total":
            _add(reading.requests, labels.get("channel", ""), value)
            _add(reading.codes, labels.get("response_code", ""), value)
        elif name == "switch_frames_refused_total":
            _add(reading.refused, labels.get("channel", ""), value)
        elif name == "switch_decision_seconds_bucket":
            _add(reading.buckets, labels.get("le", ""), value)  # all channels together
        elif name in totals:
            setattr(reading, totals[name], getattr(reading, totals[name]) + value)
    if not reading.buckets:
        raise ScrapeError("no switch_decision_seconds histogram: is this the switch's /metrics?")
    return reading


def _add(counts: dict[str, float], key: str, value: float) -> None:
    counts[key] = counts.get(key, 0.0) + value


def quantile_ms(before: dict[str, float], after: dict[str, float], q: float) -> float | None:
    """The q-quantile (ms) of the decisions between two readings, from the cumulative
    buckets' differences, interpolated within a bucket as Prometheus' histogram_quantile
    does; None when no decision fell between them."""
    bounds = sorted(after, key=lambda le: float(le))
    deltas = [(float(le), after[le] - before.get(le, 0.0)) for le in bounds]
    total = deltas[-1][1] if deltas else 0.0
    if total <= 0:
        return None
    rank, lower, below = q * total, 0.0, 0.0
    for upper, cumulative in deltas:
        if cumulative >= rank:
            if upper == float("inf"):
                return lower * 1000  # above every bound: the highest bound is all we know
            share = (rank - below) / (cumulative - below) if cumulative > below else 1.0
            return (lower + (upper - lower) * share) * 1000
        lower, below = upper, cumulative
    return lower * 1000


class SwitchPoint(msgspec.Struct, kw_only=True):
    """What the switch did between the last good reading and this one; `ok` False: this
    reading failed (a gap)."""

    second: float  # seconds into the run when the reading came
    ok: bool
    requests_per_s: dict[str, float] = {}  # channel -> decisions per second
    codes: dict[str, int] = {}  # response code -> decisions in the interval
    decision_p50_ms: float | None = None
    decision_p99_ms: float | None = None
    inflight: int | None = None
    redis_calls_per_batch: float | None = None  # None: no Redis call in the interval
    late: int | None = None  # late answers (91 for deadline) in the interval


class SwitchSide(msgspec.Struct, kw_only=True):
    admin_url: str
    readings: int  # attempted, the one before the run and the one after it included
    failed: int
    errors: list[str]  # the first few distinct reasons readings failed
    # From the reading before the first send to the one after the last answer: what the
    # switch counted for the run (None when either reading failed).
    run_requests: dict[str, int] | None
    run_refused: dict[str, int] | None
    run_codes: dict[str, int] | None
    series: list[SwitchPoint]


def point_between(last: Reading, now: Reading, second: float) -> SwitchPoint:
    span_s = max(now.at_s - last.at_s, 1e-6)
    calls = now.redis_calls - last.redis_calls
    batches = now.redis_batches - last.redis_batches
    codes = {code: int(n - last.codes.get(code, 0)) for code, n in sorted(now.codes.items())}
    p50, p99 = (quantile_ms(last.buckets, now.buckets, q) for q in (0.5, 0.99))
    return SwitchPoint(
        second=round(second, 3), ok=True,
        requests_per_s={ch: round((n - last.requests.get(ch, 0)) / span_s, 1)
                        for ch, n in sorted(now.requests.items())},
        codes={code: n for code, n in codes.items() if n},
        decision_p50_ms=None if p50 is None else round(p50, 3),
        decision_p99_ms=None if p99 is None else round(p99, 3),
        inflight=int(now.inflight),
        redis_calls_per_batch=round(calls / batches, 2) if batches > 0 else None,
        late=int(now.late - last.late))


def side_of(admin_url: str, readings: list[Reading | ScrapeError], times: list[float],
            errors: list[str], first_send_s: float) -> SwitchSide:
    """The report's part from every reading in order: the first was taken before the run,
    the last after it; `times` are their wall-clock moments."""
    series, last = [], None
    for reading, at_s in zip(readings, times, strict=True):
        second = at_s - first_send_s
        if second <= 0:  # while the workers start: nothing sent yet, nothing to show
            last = reading if isinstance(reading, Reading) else last
            continue
        if isinstance(reading, ScrapeError):
            if last is not None:
                series.append(SwitchPoint(second=round(second, 3), ok=False))
            continue
        if last is not None:
            series.append(point_between(last, reading, second))
        last = reading
    first, final = readings[0], readings[-1]
    whole = isinstance(first, Reading) and isinstance(final, Reading) and len(readings) > 1
    return SwitchSide(
        admin_url=admin_url, readings=len(readings),
        failed=sum(isinstance(r, ScrapeError) for r in readings), errors=errors,
        run_requests=_difference(first.requests, final.requests) if whole else None,
        run_refused=_difference(first.refused, final.refused) if whole else None,
        run_codes=_difference(first.codes, final.codes) if whole else None,
        series=series)


def summary_line(side: SwitchSide) -> str:
    """One line for the terminal: what the switch counted, and how its readings went."""
    readings = f"{side.readings} readings of /metrics, {side.failed} failed"
    if side.run_requests is None:
        return f"switch: its count for the run is not known ({readings})"
    decided, refused = sum(side.run_requests.values()), sum(side.run_refused.values())
    return (f"switch: {decided:,} answers with a decision + {refused:,} refused frames for the "
            f"run ({readings})")


def _difference(before: dict[str, float], after: dict[str, float]) -> dict[str, int]:
    return {key: int(value - before.get(key, 0)) for key, value in sorted(after.items())
            if value - before.get(key, 0)}


def metrics_url(admin_url: str) -> tuple[str, int, str]:
    """(host, port, path) of /metrics at `admin_url` (http://HOST:PORT); ValueError else."""
    parts = urllib.parse.urlsplit(admin_url if "//" in admin_url else "http://" + admin_url)
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"--admin-url {admin_url!r}: expected http://HOST:PORT, e.g. "
                         "http://127.0.0.1:8680 (the switch's admin API)")
    try:
        port = parts.port or 80
    except ValueError:
        raise ValueError(f"--admin-url {admin_url!r}: the port is not a number") from None
    return parts.hostname, port, parts.path.rstrip("/") + "/metrics"


async def fetch_metrics(host: str, port: int, path: str) -> str:
    """One GET of /metrics (HTTP/1.0: the answer ends with the connection); every wait is
    bounded by the caller's timeout, the body by SCRAPE_BODY_MAX_BYTES."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(f"GET {path} HTTP/1.0\r\nHost: {host}:{port}\r\n\r\n".encode())
        data = bytearray()
        while chunk := await reader.read(65536):
            data += chunk
            if len(data) > SCRAPE_BODY_MAX_BYTES:
                raise ScrapeError(f"/metrics is larger than {SCRAPE_BODY_MAX_BYTES} bytes")
    finally:
        writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    status = head.split(b"\r\n", 1)[0].split()
    if len(status) < 2 or status[1] != b"200":
        raise ScrapeError(f"{path} answered {b' '.join(status[1:]).decode(errors='replace')!r}"
                          if status else f"{path}: no HTTP answer")
    return body.decode("utf-8", errors="replace")


class Scraper:
    """Reads /metrics before the run, once a second during it, and once after."""

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url
        self.where = metrics_url(admin_url)
        self.readings: list[Reading | ScrapeError] = []
        self.times: list[float] = []
        self.errors: list[str] = []
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        await self.read()  # the baseline: the run's counts are differences from it
        self._task = asyncio.get_running_loop().create_task(self._every_second())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.read()  # after the last answer: the run's counts end here

    def side(self, first_send_s: float) -> SwitchSide:
        return side_of(self.admin_url, self.readings, self.times, self.errors, first_send_s)

    async def _every_second(self) -> None:
        loop = asyncio.get_running_loop()
        due = loop.time()
        while True:
            due += SCRAPE_INTERVAL_S
            await asyncio.sleep(max(0.0, due - loop.time()))
            await self.read()

    async def read(self) -> None:
        try:
            async with asyncio.timeout(SCRAPE_TIMEOUT_S):
                text = await fetch_metrics(*self.where)
            reading: Reading | ScrapeError = reading_of(parse_samples(text), time.time())
        except (OSError, TimeoutError, ScrapeError) as error:
            reading = error if isinstance(error, ScrapeError) else ScrapeError(
                f"{type(error).__name__}: {error}" if str(error) else type(error).__name__)
            if str(reading) not in self.errors and len(self.errors) < ERRORS_KEPT:
                self.errors.append(str(reading))
        self.readings.append(reading)
        self.times.append(time.time())
