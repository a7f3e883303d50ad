"""What ISO 8583 values mean, in words, for `switch iso parse` and its table.

Pure functions of a field's decoded value (and of the message it is in): nothing here
decodes bytes. What the switch itself does with a value comes from the channel code
(protocols/iso_channel.py) and the vocabulary (protocols/codes.py), never from a copy.
Card data (F2, F34, F35, F36, F45; ICC tags 5A, 57, 56, 9F6B, 5F20) is masked here, and every
other text is passed through mask_card_numbers_in: a table never shows a full card number.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from protocols.cardnumbers import mask_card_numbers_in, mask_pan
from protocols.channel import FieldError
from protocols.codes import DECLINING, MEANINGS, REASON_CODES, Code, reason_of
from protocols.iso_channel import NETWORK_CODES, STAND_IN_MARK, class_of, response_mti

# --- the MTI ---------------------------------------------------------------------------------

MTI_VERSIONS = {"0": "ISO 8583:1987", "1": "ISO 8583:1993", "2": "ISO 8583:2003"}
MTI_CLASSES = {"1": "authorization", "2": "financial", "3": "file action",
               "4": "reversal", "5": "reconciliation", "6": "administrative",
               "7": "fee collection", "8": "network management"}
MTI_FUNCTIONS = {"0": "request", "1": "response", "2": "advice", "3": "advice response",
                 "4": "notification"}
MTI_ORIGINS = {"0": "origin acquirer", "1": "origin acquirer, a repeat",
               "2": "origin issuer", "3": "origin issuer, a repeat", "4": "origin other",
               "5": "origin other, a repeat"}


def mti_meaning(mti: str) -> str:
    parts = [MTI_CLASSES.get(mti[1], f"class {mti[1]}"),
             MTI_FUNCTIONS.get(mti[2], f"function {mti[2]}"),
             MTI_ORIGINS.get(mti[3], f"origin {mti[3]}"),
             MTI_VERSIONS.get(mti[0], f"version {mti[0]}")]
    text = ", ".join(parts)
    if mti[2] in "02":  # a request or an advice: the answer the switch would give
        text += f"; answered {response_mti(mti)}"
    return text


# --- field by field ----------------------------------------------------------------------------

TRANSACTION_TYPES = {"00": "purchase (goods and services)", "01": "cash withdrawal",
                     "09": "purchase with cash back", "20": "refund (return)",
                     "21": "deposit", "30": "available funds inquiry",
                     "31": "balance inquiry", "40": "transfer"}
ACCOUNT_TYPES = {"00": "default", "10": "savings", "20": "checking", "30": "credit"}
ENTRY_MODES = {"00": "unknown", "01": "manual (key entry)", "02": "magnetic stripe",
               "03": "bar code", "05": "chip", "07": "contactless chip (qPBOC)",
               "10": "credential on file", "80": "fallback from chip to stripe",
               "81": "e-commerce / in-app", "90": "magnetic stripe, full track",
               "91": "contactless stripe", "95": "chip, card data unreliable"}
PIN_CAPABILITIES = {"0": "PIN capability unknown", "1": "PIN entered", "2": "no PIN"}
CONDITION_CODES = {"00": "normal", "06": "pre-authorization", "08": "mail or phone order",
                   "64": "instalment"}
CURRENCIES = {"156": "CNY (yuan)", "344": "HKD", "840": "USD", "978": "EUR"}
NETWORK_MEANINGS = {"001": "sign-on", "002": "sign-off", "101": "key change",
                    "201": "cut-over", "202": "cut-over", "301": "echo test"}
AMOUNT_TYPES = {"01": "ledger balance", "02": "available balance"}
AMOUNT_FIELDS = ("4", "5", "6")


def yuan(fen: int) -> str:
    return f"{fen // 100:,}.{fen % 100:02d} yuan"


def amount(value: str, message: Mapping) -> str:
    if not value.isdigit():
        return ""
    currency = message.get("49", "156")
    if currency != "156":
        return f"{int(value)} in the minor unit of currency {currency}"
    return f"{int(value)} fen = {yuan(int(value))}"


def processing(value: str, message: Mapping) -> str:
    kind, source, target = value[:2], value[2:4], value[4:6]
    text = (f"{TRANSACTION_TYPES.get(kind, f'transaction type {kind}')}, from the "
            f"{ACCOUNT_TYPES.get(source, source)} account, to the "
            f"{ACCOUNT_TYPES.get(target, target)} account")
    mti = message.get("t", "")
    if len(mti) == 4 and mti[2] in "02" and mti[1] != "8":
        text += f"; {switch_class(mti, message)}"
    return text


def switch_class(mti: str, message: Mapping) -> str:
    """What the switch makes of this MTI and F3: its message class, or the refusal."""
    try:
        return f"the switch: {class_of(mti, message).value}"
    except FieldError as error:
        return f"the switch answers {error.code} {error.reason}"


def entry_mode(value: str, message: Mapping) -> str:
    pan, pin = value[:2], value[2:3]
    return f"{ENTRY_MODES.get(pan, f'entry mode {pan}')}, {PIN_CAPABILITIES.get(pin, pin)}"


def transmitted(value: str, message: Mapping) -> str:
    return f"{value[:2]}-{value[2:4]} {value[4:6]}:{value[6:8]}:{value[8:10]} (MM-DD hh:mm:ss)"


def local_time(value: str, message: Mapping) -> str:
    return f"{value[:2]}:{value[2:4]}:{value[4:6]}"


def local_date(value: str, message: Mapping) -> str:
    return f"{value[:2]}-{value[2:4]} (MM-DD)"


def expiry(value: str, message: Mapping) -> str:
    return f"20{value[:2]}-{value[2:4]} (YYMM)"


def institution(value: str, message: Mapping) -> str:
    if len(value) == 8:  # UnionPay: 4 digits of institution, 4 of area
        return f"institution {value[:4]}, area {value[4:]}"
    return ""


def response_code(value: str, message: Mapping) -> str:
    if value in set(Code):
        return MEANINGS[Code(value)]
    return "not a code this switch gives"


def reason(value: str, message: Mapping) -> str:
    declared = reason_of(value)
    if declared is None:
        return "not a reason this switch gives"
    codes = REASON_CODES[declared]
    given = "the code the policy names" if codes == DECLINING else " ".join(sorted(codes))
    family = f"{declared.value}, " if declared.value != value else ""
    return f"{family}comes with {given}"


def currency(value: str, message: Mapping) -> str:
    return CURRENCIES.get(value, "ISO 4217 numeric currency code")


def balances(value: str, message: Mapping) -> str:
    """F54: 20-character blocks of account type, amount type, currency, C/D, 12 digits."""
    parts = []
    for at in range(0, len(value) - 19, 20):
        block = value[at : at + 20]
        account, kind, money, sign, digits = (block[:2], block[2:4], block[4:7], block[7],
                                              block[8:20])
        if not digits.isdigit():
            return ""
        fen = int(digits) * (-1 if sign == "D" else 1)
        what = AMOUNT_TYPES.get(kind, f"amount type {kind}")
        shown = yuan(fen) if money == "156" and fen >= 0 else f"{fen} ({money})"
        parts.append(f"{ACCOUNT_TYPES.get(account, account)} account {what}: {shown}")
    return "; ".join(parts)


def network_code(value: str, message: Mapping) -> str:
    answered = "answered 00" if value in NETWORK_CODES else "the switch answers 12"
    return f"{NETWORK_MEANINGS.get(value, 'network code ' + value)}; {answered}"


def original_data(value: str, message: Mapping) -> str:
    if len(value) != 42:
        return ""
    return (f"original MTI {value[:4]}, STAN {value[4:10]}, F7 {value[10:20]}, acquirer "
            f"{value[20:31]}, forwarding institution {value[31:42]}")


def private_use(value: str, message: Mapping) -> str:
    return "decided in stand-in (Redis was unreachable)" if value == STAND_IN_MARK else ""


MEANERS: Mapping[str, Callable[[str, Mapping], str]] = {
    "3": processing, "4": amount, "5": amount, "6": amount, "7": transmitted,
    "12": local_time, "13": local_date, "14": expiry, "22": entry_mode, "32": institution,
    "33": institution, "39": response_code, "44": reason, "49": currency, "50": currency,
    "51": currency, "54": balances, "63": private_use, "70": network_code,
    "90": original_data,
}


def field_meaning(key: str, value: str, message: Mapping) -> str:
    if key == "25":
        return CONDITION_CODES.get(value, "")
    meaner = MEANERS.get(key)
    return meaner(value, message) if meaner else ""


# --- card data ---------------------------------------------------------------------------------

CARD_FIELDS = frozenset({"2", "34"})  # a card number (or a wallet token) alone
TRACK_FIELDS = frozenset({"35", "36", "45"})  # tracks: PAN, separator, expiry, secrets
SECRET_FIELDS = CARD_FIELDS | TRACK_FIELDS


def mask_track(value: str) -> str:
    """The PAN masked, the expiry after the separator kept, everything else starred."""
    start = next((i for i, c in enumerate(value) if c.isdigit()), len(value))
    end = start
    while end < len(value) and value[end].isdigit():
        end += 1
    head, pan, rest = value[:start], value[start:end], value[end:]
    kept = rest[:5] if rest[:1] in ("=", "D") and rest[1:5].isdigit() else rest[:1]
    return head + mask_pan(pan) + kept + "*" * (len(rest) - len(kept))


def masked(key: str, value: str) -> str:
    """A field's text as a table may show it."""
    if key in CARD_FIELDS:
        return mask_pan(value)
    if key in TRACK_FIELDS:
        return mask_track(value)
    return mask_card_numbers_in(value)
