"""`loadtest run --from-recording DIR`: a recording's requests as the workload, at any rate.

The requests are sent as recorded, byte for byte, in their recorded order, over and over
(after the first pass every one is a repeat, which the switch answers from its remembered
answers). Each is known to the worker by the correlation id its recorded answer carries
(read with the channel's adapter, as the worker reads the new answers). Requests recorded
without an answer, and later repeats of an id already in the workload, are left out: the
worker never has one id in flight twice. Worker i of N takes every N-th request.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path

from loadtest.generator.workload import PENDING, Txn
from protocols.messages import AuthRequest, AuthResponse, MessageClass
from protocols.recording import (
    FILE_GLOB,
    ChannelWire,
    Played,
    channel_wires,
    file_order,
    in_arrival_order,
    read_series,
)


class RecordingProblem(ValueError):
    pass


def read_folder(folder: Path) -> tuple[list[Played], dict[str, ChannelWire]]:
    """Every exchange of a recording folder in arrival order, and how each channel frames."""
    paths = sorted(folder.glob(FILE_GLOB), key=lambda p: file_order(p.name))
    if not paths:
        raise RecordingProblem(f"{folder}: no recording files ({FILE_GLOB}) in it")
    series = read_series([(path.name, path.read_bytes()) for path in paths])
    return in_arrival_order(series), channel_wires(series)


def channel_mix(played: list[Played]) -> dict[str, int]:
    """The recording's channels, weighted by how many requests each has."""
    mix: dict[str, int] = {}
    for item in played:
        mix[item.exchange.channel] = mix.get(item.exchange.channel, 0) + 1
    return mix


class RecordedWorkload:
    def __init__(self, played: list[Played],
                 decoders: dict[str, Callable[[bytes], tuple[str, AuthResponse]]],
                 worker: int = 0, workers: int = 1) -> None:
        self.txns = self._txns(played[worker::workers], decoders)
        if not self.txns:
            raise RecordingProblem("the recording has no answered request for this worker "
                                   "to send")
        self.cycle = itertools.cycle(self.txns)
        self.transmitted_at = ""  # the worker sets it; recorded bytes keep their own

    @staticmethod
    def _txns(played: list[Played], decoders) -> list[Txn]:
        seen: set[tuple[str, str]] = set()
        txns = []
        for number, item in enumerate(played):
            x = item.exchange
            if not x.answer or x.channel not in decoders:
                continue
            correlation_id, _ = decoders[x.channel](x.answer)
            if (x.channel, correlation_id) in seen:
                continue
            seen.add((x.channel, correlation_id))
            kind = x.kind or "sale"
            # The card field keys the connection a card-ordered channel (x-pay) keeps to: a
            # recorded connection's requests stay on one connection, in their order.
            request = AuthRequest(message_class=MessageClass(kind), channel=x.channel,
                                  card=f"{item.process}:{x.connection}",
                                  amount_fen=x.amount_fen, mcc=x.mcc)
            txns.append(Txn(number, kind, x.channel, request, None,
                            (correlation_id, x.request)))
        return txns

    def distinct(self, channel: str) -> int:
        return sum(1 for txn in self.txns if txn.channel == channel)

    def next(self) -> Txn:
        txn = next(self.cycle)
        txn.state = PENDING  # again on each pass
        return txn
