"""After its Redis restarts, the switch's first request on every channel is decided, not
answered 91: every connection it holds to Redis (the ledger's and the vault's pipelines, the
client pool of terminal keys) reconnects before answering."""

from __future__ import annotations

from switch import testing
from switch.redis_runner import PrivateRedis, free_port

CHANNELS = ("jd", "wechat", "pos", "xpay")


async def test_the_first_request_after_a_redis_restart_is_decided(tmp_path):
    redis = PrivateRedis(tmp_path / "redis", durable=True, port=free_port())
    url = redis.start()
    try:
        async with testing.start(redis_url=url) as switch:
            pan = await switch.new_card(limit_fen=100_000)
            for channel in CHANNELS:  # every connection to Redis opened and in use
                answer = await switch.send(channel, pan, amount=100, mcc="5411")
                assert answer.response.response_code == "00", (channel, answer.response)
            redis.stop()
            redis.start()  # the same port and data: the switch's connections are stale
            for channel in CHANNELS:
                answer = await switch.send(channel, pan, amount=100, mcc="5411")
                assert answer.response.response_code == "00", (channel, answer.response)
            assert (await switch.card(pan)).posted == 800
    finally:
        redis.stop()
