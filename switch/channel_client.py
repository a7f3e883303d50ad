"""A client of every channel for tools that drive a running switch (scenarios, the embeddable
switch of switch/testing.py): it builds each message as `switch send` does, with the send
command's own argument parser, so the tools and `switch send` agree on every default.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from protocols.channel import ClientAnswer
from protocols.iso_session import SessionAction
from protocols.ledger_layout import card_key
from switch import send
from switch.ledger import Ledger
from switch.terminal_cli import key_from_store
from switch.terminal_keys import TerminalKeyStore
from switch.tokens import TokenVault

XPAY_WALLET = "apple"  # the wallet a card's test token is provisioned in


@dataclass(frozen=True)
class Sent:
    """A message sent and its answer: `resend` sends the very same bytes again."""

    channel: str
    args: argparse.Namespace
    body: bytes
    answer: ClientAnswer


class ChannelClient:
    def __init__(self, host: str, ports: dict[str, int], send_parser: argparse.ArgumentParser,
                 ledger: Ledger) -> None:
        """`ledger`: the switch's Redis, where x-pay tokens are provisioned for cards."""
        self.host = host
        self.ports = ports
        self.send_parser = send_parser
        self.ledger = ledger
        self.vault: TokenVault | None = None  # made on the first x-pay message
        self.tokens: dict[str, list] = {}  # PAN -> [token, key hex, last ATC]

    async def send(self, channel: str, pan: str, *, type: str = "sale", amount: int = 0,
                   mcc: str = "", original: str = "", partial: bool = False,
                   lightning: bool = False, expiry: str = "", merchant: str = "",
                   atc: int | None = None, sign_type: str = "", refund: str = "",
                   pin: str = "", terminal: str = "") -> Sent:
        """One message; `original`: the id of the answer to the original (its
        correlation_id); x-pay pays with the card's token (provisioned on first use).
        WeChat: `sign_type` MD5 or HMAC-SHA256 (the default); `type="refundquery"` asks for
        the refunds of `original` (`refund`: only that out_refund_no). `pin` (pos): sent
        under the terminal's session PIN key, the terminal signed on first when it has no
        session (as a terminal does). `terminal` (pos, xpay): F41, else the demo terminal."""
        if type == "inquiry" and not (original or expiry) and channel != "xpay":
            # A balance inquiry proves the card (switch/engine.py unproven): with its expiry.
            expiry = await self.ledger.client.hget(card_key(pan), "expiry") or ""
        argv = ["--channel", channel, "--type", type, "--amount", str(amount)]
        for option, value in (("--mcc", mcc), ("--expiry", expiry), ("--merchant", merchant),
                              ("--original", original), ("--sign-type", sign_type),
                              ("--refund", refund), ("--terminal", terminal)):
            if value:
                argv += [option, value]
        argv += ["--partial"] * partial + ["--lightning"] * lightning
        argv += ["--pin", pin] if pin else []
        args = self.send_parser.parse_args(argv)
        card = pan
        if channel == "xpay":
            args.token, args.token_key, args.atc = await self._next_token_use(pan)
            args.atc = args.atc if atc is None else atc
            card = args.token
        if channel in ("pos", "xpay"):  # signed as `switch send` signs: the terminal's key
            store = TerminalKeyStore(self.ledger.client)
            args.signing_key = await key_from_store(store, args)
            if pin and getattr(args.signing_key, "pin_key", None) is None:
                await self.sign_on(args.acquirer, args.terminal)
                args.signing_key = await key_from_store(store, args)
        body = send.SENDERS[channel].encode(send.build_request(args, card), args)
        return await self._exchange(channel, args, body)

    async def sign_on(self, acquirer: str, terminal: str,
                      action: SessionAction = SessionAction.SIGN_ON) -> dict:
        """The terminal's 0800 to the pos listener (send.sign_on_exchange); the 0810."""
        return await send.sign_on_exchange(self.host, self.ports["pos"], acquirer, terminal,
                                           action)

    async def resend(self, sent: Sent) -> Sent:
        """The same message, byte for byte (a client that heard nothing sends it again)."""
        return await self._exchange(sent.channel, sent.args, sent.body)

    async def _exchange(self, channel: str, args: argparse.Namespace, body: bytes) -> Sent:
        sender = send.SENDERS[channel]
        reply = await send.exchange(self.host, self.ports[channel], sender.header, body)
        return Sent(channel, args, body, sender.decode(reply, args))

    async def _next_token_use(self, pan: str) -> tuple[str, str, int]:
        if pan not in self.tokens:
            if self.vault is None:
                self.vault = TokenVault(self.ledger.client, self.ledger.clock)
                self.ledger.pipelines.append(self.vault.scripts)  # closed with the ledger
            view = await self.vault.provision(pan, XPAY_WALLET)
            self.tokens[pan] = [view.token, view.key, view.atc]
        token = self.tokens[pan]
        token[2] += 1
        return token[0], token[1], token[2]
