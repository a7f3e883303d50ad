"""Load-test adapters of the ISO 8583 channels: pos (terminals) and xpay (wallet tokens).

How the generated transactions are named on the wire (docs/channels/pos.md): a
transaction is acquirer + terminal + STAN. Each worker of each run has its own terminals
(a 5-character tag from the run's id prefix, plus a 3-digit block), the STAN is the
transaction's number modulo a million and the block its number divided by a million, so
no STAN repeats on a terminal. A capture, reversal or refund goes out on its original's
terminal (F90 has no terminal id) and names the original in F90. Answers are matched by
MTI-STAN-F7, as protocols/iso_client.py names them.

x-pay sends the card's wallet token in F2 and, for the device's own payments, F55 with a
cryptogram over the amount and a per-token ATC that only grows. Each worker has its own
token per card, so the ATCs of two workers never cross; `seed_tokens` in cards.py puts
them in the vault with their ATC back at zero.

Every message carries the MAC of the load test's own acquirer (ACQUIRER), whose key stands
for all its terminals (terminal "*" in the key store); `seed_terminal_key` in cards.py puts
it in Redis. Options: `mac=off` sends unsigned (to a listener with mac = "off"); `mac_key`
(hex) and `mac_algorithm` sign with another key.
"""

from __future__ import annotations

import hashlib
import zlib
from typing import TYPE_CHECKING

import msgspec

from loadtest.generator.adapters.base import EVERY_KIND, ClientAdapter, Context, Options
from protocols import xpay
from protocols.cardnumbers import LOAD_TEST_TOKEN_BIN, luhn_check_digit
from protocols.framing import HEADER_FORMATS
from protocols.iso_client import REQUEST_SHAPES, IsoClient, correlation_id, request_message
from protocols.iso_mac import MacAlgorithm, MacKey
from protocols.messages import AuthResponse

if TYPE_CHECKING:
    from loadtest.generator.workload import Txn

# F32 of every load-test message: an acquirer of its own, apart from the demo one, whose
# acquirer-wide MAC key (LOAD_TEST_MAC) signs for the run's terminals.
ACQUIRER = "00090000"
LOAD_TEST_MAC = MacKey(MacAlgorithm.X9_19, hashlib.sha256(b"loadtest-acquirer-key").digest()[:16])
STANS_PER_TERMINAL = 1_000_000  # F11 is six digits
TOKEN_BIN = LOAD_TEST_TOKEN_BIN  # next to the switch's own token range: never a card number
ATC_MAX = 0xFFFF  # 9F36 is two bytes
BASE36 = "0123456789abcdefghijklmnopqrstuvwxyz"


def terminal_tag(ref_prefix: str) -> str:
    """Five characters unique (in practice) to one worker of one run."""
    value = zlib.crc32(ref_prefix.encode())
    return "".join(BASE36[value // 36**i % 36] for i in range(5)).upper()


def load_test_token(card_index: int, worker: int) -> str:
    """The wallet token of card number `card_index` (seeding order) for `worker`."""
    body = f"{TOKEN_BIN}{worker:02d}{card_index:07d}"
    return body + luhn_check_digit(body)


def token_secret(token: str) -> bytes:
    """The token's cryptogram key: derived, so the generator needs no vault lookup."""
    return hashlib.sha256(f"loadtest-token-key:{token}".encode()).digest()[:16]


class _IsoNaming:
    """STAN, F7 and terminal of a transaction, and its correlation id."""

    def __init__(self, context: Context) -> None:
        self.tag = terminal_tag(context.ref_prefix)

    def terminal(self, txn: Txn) -> str:
        named_by = txn.original or txn  # the original's terminal: F90 carries none
        return f"{self.tag}{named_by.number // STANS_PER_TERMINAL % 1000:03d}"

    @staticmethod
    def ident(txn: Txn) -> tuple[str, str, str]:
        """(request MTI, STAN, F7)."""
        return (REQUEST_SHAPES[txn.request.message_class][0],
                f"{txn.number % STANS_PER_TERMINAL:06d}", txn.request.transmitted_at[4:])

    def fields(self, txn: Txn, request, entry_mode: str) -> tuple[str, dict]:
        mti, stan, transmitted = self.ident(txn)
        original = correlation_id(*self.ident(txn.original)) if txn.original else ""
        message = request_message(request, stan=stan, transmitted=transmitted,
                                  terminal=self.terminal(txn), acquirer=ACQUIRER,
                                  original=original, entry_mode=entry_mode)
        return correlation_id(mti, stan, transmitted), message


def _client(options: Options) -> tuple[IsoClient, str]:
    header = options.get("header", "binary2")
    if header not in HEADER_FORMATS:
        raise ValueError(f"header must be one of {', '.join(HEADER_FORMATS)}")
    return IsoClient(options.get("dialect", "iso87ascii"), mac_key_of(options)), header


def mac_key_of(options: Options) -> MacKey | None:
    if options.get("mac") == "off":
        return None
    if options.get("mac_key"):
        return MacKey.parse(options.get("mac_algorithm", MacAlgorithm.X9_19), options["mac_key"])
    return LOAD_TEST_MAC


def _decoder(client: IsoClient):
    def decode(body: bytes) -> tuple[str, AuthResponse]:
        answer = client.answer(body)
        return answer.correlation_id, answer.response

    return decode


def pos_adapter(options: Options, context: Context) -> ClientAdapter:
    client, header = _client(options)
    naming = _IsoNaming(context)

    def encode(txn: Txn) -> tuple[str, bytes]:
        ident, message = naming.fields(txn, txn.request, options.get("entry_mode", "052"))
        return ident, client.encode(message)

    return ClientAdapter("pos", HEADER_FORMATS[header], 8583, encode, _decoder(client))


def xpay_adapter(options: Options, context: Context) -> ClientAdapter:
    client, header = _client(options)
    naming = _IsoNaming(context)
    token_of = {pan: load_test_token(i, context.worker) for i, pan in enumerate(context.pans)}
    atcs: dict[str, int] = {}

    def encode(txn: Txn) -> tuple[str, bytes]:
        token = token_of[txn.request.card]
        request = msgspec.structs.replace(txn.request, card=token)
        ident, message = naming.fields(txn, request, options.get("entry_mode", "072"))
        if request.message_class in xpay.DEVICE_CLASSES:
            atc = atcs[token] = atcs.get(token, 0) + 1
            if atc > ATC_MAX:
                raise OverflowError(f"token ATC past {ATC_MAX}: reseed the tokens (more cards)")
            unpredictable = (txn.number * 2654435761 % 2**32).to_bytes(4, "big")
            message["55"] = xpay.icc_field(request.amount_fen, request.currency, atc,
                                           unpredictable, token_secret(token),
                                           client.binary_mac)
        return ident, client.encode(message)

    return ClientAdapter("xpay", HEADER_FORMATS[header], 8584, encode, _decoder(client),
                         EVERY_KIND, card_ordered=True)
