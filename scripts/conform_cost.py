"""What the conformance kit costs per message: CPU time of its checks (a request read
strictly and checked against the session, its answer read), beside the listener's own
decode of the same request. In one process, no sockets: N POS purchases and N JD sales.

    .venv/bin/python scripts/conform_cost.py --messages 3000

CPU time (time.process_time), so a busy machine slows it less than it slows wall time;
run it a few times and read the spread. See docs/performance.md.
"""

from __future__ import annotations

import argparse
import datetime
import time
from collections.abc import Callable

from protocols import jd
from protocols.cardnumbers import luhn_check_digit
from protocols.conformance.iso_rules import IsoRules
from protocols.conformance.jd_rules import JdRules
from protocols.conformance.session import Rules, Session
from protocols.demo import DEMO_ACQUIRER, DEMO_JD_KEY, DEMO_JD_MERCHANT, DEMO_POS_MAC
from protocols.iso_client import IsoClient, request_message
from protocols.iso_mac import MacKey
from protocols.iso_session import SessionAction, network_request
from protocols.messages import AuthRequest, AuthResponse, MessageClass
from protocols.pos import PosCodec

PAN_BODY = "625368000000001"
APPROVED = AuthResponse(response_code="00", approved_fen=100, auth_id="123456")


def pos_messages(count: int, now: datetime.datetime) -> list[tuple[bytes, bytes]]:
    client, server = IsoClient(key=MacKey.parse(*DEMO_POS_MAC)), PosCodec()
    pan, transmitted = PAN_BODY + luhn_check_digit(PAN_BODY), now.strftime("%m%d%H%M%S")
    # The terminal signs on first, as the kit asks: its purchases then carry no finding.
    sign_on = network_request(SessionAction.SIGN_ON, stan="999999", transmitted=transmitted,
                              acquirer=DEMO_ACQUIRER, terminal="TERM0001")
    pairs = [(client.encode(sign_on), server.answer(sign_on, "00"))]
    for number in range(count):
        request = AuthRequest(message_class=MessageClass.SALE, channel="pos", card=pan,
                              amount_fen=100, mcc="5411")
        fields = request_message(request, stan=f"{number:06d}", transmitted=transmitted,
                                 terminal="TERM0001", acquirer=DEMO_ACQUIRER)
        pairs.append((client.encode(fields), server.answer(fields, "00")))
    return pairs


def jd_messages(count: int, now: datetime.datetime) -> list[tuple[bytes, bytes]]:
    key, pan = DEMO_JD_KEY.encode(), PAN_BODY + luhn_check_digit(PAN_BODY)
    server = jd.JdCodec({DEMO_JD_MERCHANT: key})
    pairs = []
    for number in range(count):
        request = AuthRequest(message_class=MessageClass.SALE, channel="jd", card=pan,
                              amount_fen=100, mcc="5411", merchant_id=DEMO_JD_MERCHANT,
                              txn_ref=f"T{number}",
                              transmitted_at=now.strftime("%Y%m%d%H%M%S"))
        body = jd.encode_request(request, key)
        pairs.append((body, server.encode_response(server.decode_request(body).context,
                                                   APPROVED)))
    return pairs


def per_message_us(pairs: list[tuple[bytes, bytes]], work: Callable[[bytes, bytes], None]
                   ) -> float:
    began = time.process_time()
    for request, answer in pairs:
        work(request, answer)
    return (time.process_time() - began) / len(pairs) * 1e6


def kit(rules: Rules, now: datetime.datetime) -> Callable[[bytes, bytes], None]:
    session = Session(rules)

    def check(request: bytes, answer: bytes) -> None:
        session.answered(session.request(request, now), answer)

    return check


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=3000)
    count = parser.parse_args().messages
    now = datetime.datetime.now(datetime.UTC)
    pos, sales = pos_messages(count, now), jd_messages(count, now)
    pos_codec, jd_codec = PosCodec(), jd.JdCodec({DEMO_JD_MERCHANT: DEMO_JD_KEY.encode()})
    print(f"pos: kit {per_message_us(pos, kit(IsoRules(), now)):.0f} us CPU a message; the "
          f"listener's decode {per_message_us(pos, lambda r, a: pos_codec.decode_request(r)):.0f}"
          " us")
    jd_rules = JdRules({DEMO_JD_MERCHANT: DEMO_JD_KEY.encode()})
    print(f"jd:  kit {per_message_us(sales, kit(jd_rules, now)):.0f} us CPU a message; the "
          f"listener's decode {per_message_us(sales, lambda r, a: jd_codec.decode_request(r)):.0f}"
          " us")


if __name__ == "__main__":
    main()
