"""Which errors say "Redis is not serving now" (the issuer unavailable, 91; a repayment
unconfirmed; an announcement listener subscribing again) and which say we are wrong. Each
refusal as both paths hand it on: the auto-pipelines' (the reply's text in a ResponseError)
and redis-py's clients' (their parser's class, the code stripped from the text)."""

from __future__ import annotations

import pytest
from redis._parsers.base import BaseParser
from redis.exceptions import (
    ClusterError,
    ConnectionError,
    ResponseError,
    SlotNotCoveredError,
    TimeoutError,
)

from switch.redis_client import unavailable_error

NOT_NOW_REPLIES = [
    "LOADING Redis is loading the dataset in memory",
    "BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.",
    "MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.",
    "CLUSTERDOWN The cluster is down",
    "TRYAGAIN Multiple keys request during rehashing of slot",
    "MOVED 3999 127.0.0.1:6381",
    "ASK 3999 127.0.0.1:6381",
]
WRONG_REPLIES = [
    "CROSSSLOT Keys in request don't hash to the same slot",  # a call of ours: a bug
    "ERR Function not found",
    "WRONGTYPE Operation against a key holding the wrong kind of value",
    "BUSYKEY Target key name already exists.",  # not BUSY
    "NOSCRIPT No matching script. Please use EVAL.",
]


@pytest.mark.parametrize("reply", NOT_NOW_REPLIES)
def test_a_refusal_for_now_counts_as_unavailable_from_either_client(reply):
    assert unavailable_error(ResponseError(reply))  # the auto-pipelines'
    assert unavailable_error(BaseParser.parse_error(reply))  # redis-py's


@pytest.mark.parametrize("reply", WRONG_REPLIES)
def test_an_error_of_ours_or_the_data_does_not(reply):
    assert not unavailable_error(ResponseError(reply))
    assert not unavailable_error(BaseParser.parse_error(reply))


@pytest.mark.parametrize("error", [
    ConnectionError("Connection refused"), TimeoutError("Timeout reading from socket"),
    OSError("Network is unreachable"),
    SlotNotCoveredError('Slot "3999" is not covered by the cluster.'),  # RedisCluster's own
    ClusterError("TTL exhausted."),  # RedisCluster: redirected past its bound
])
def test_an_unreachable_redis_or_cluster_counts_as_unavailable(error):
    assert unavailable_error(error)


def test_a_bug_of_ours_does_not():
    assert not unavailable_error(ValueError("invalid literal for int() with base 10: 'x'"))
    assert not unavailable_error(KeyError("version"))
