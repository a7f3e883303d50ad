"""A real switch with its admin API on a free loopback port, for the admin and dashboard
tests, and the HTTP client calls they make."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from switch import testing
from switch.admin.policy_swap import PolicySource
from switch.app import start_admin
from switch.config import Admin, Config, Listener

TOKEN = "test-token-0123456789"


class AdminSwitch:
    def __init__(self, embedded: testing.EmbeddedSwitch, url: str) -> None:
        self.switch = embedded
        self.url = url

    async def call(self, method: str, path: str, token: str | None = TOKEN, body=None
                   ) -> tuple[int, dict | str]:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        data = json.dumps(body) if isinstance(body, dict) else body
        async with aiohttp.ClientSession() as session, session.request(
                method, self.url + path, headers=headers, data=data) as reply:
            text = await reply.text()
            is_json = reply.content_type == "application/json"
            return reply.status, json.loads(text) if is_json else text

    async def metrics(self) -> dict[tuple[str, tuple], float]:
        """Every sample of /metrics, parsed by prometheus-client's own text parser:
        (name, sorted labels) -> value."""
        status, text = await self.call("GET", "/metrics", token=None)
        assert status == 200
        return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
                for family in text_string_to_metric_families(text) for sample in family.samples}


def metric(samples: dict, name: str, **labels) -> float:
    """The sum of `name`'s samples whose labels include `labels`."""
    return sum(value for (sample, found), value in samples.items() if sample == name
               and set(labels.items()) <= set(found))


@contextlib.asynccontextmanager
async def admin_switch(redis_url: str | None, policy: Path | None = None,
                       channels: tuple[str, ...] = ("jd", "pos"),
                       journal_dir: Path | None = None) -> AsyncIterator[AdminSwitch]:
    config = Config(listeners={name: Listener(port=0) for name in channels},
                    policy=str(policy or ""),
                    admin=Admin(listen="127.0.0.1:0", token=TOKEN))
    async with testing.start(config, redis_url=redis_url, journal_dir=journal_dir) as embedded:
        source = PolicySource(embedded.server, config.policy)
        admin = await start_admin(config, embedded.server, source)
        try:
            yield AdminSwitch(embedded, f"http://127.0.0.1:{admin.port}")
        finally:
            await admin.stop()
