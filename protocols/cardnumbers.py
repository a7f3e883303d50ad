"""Card numbers: Luhn check digits and masking (first 6 and last 4 is all we ever show)."""

from __future__ import annotations

import re

# Wallet token ranges (x-pay DPANs): a token stands in for a card and may be shown; the
# switch's vault issues from the first, the load generator's seeding uses the second.
SWITCH_TOKEN_BIN = "628888"
LOAD_TEST_TOKEN_BIN = "628889"
TOKEN_BINS = (SWITCH_TOKEN_BIN, LOAD_TEST_TOKEN_BIN)

# A full card number in text: 13 to 19 digits that are not part of a longer word (digits or
# letters: a hex signature or key holds long runs of digits), starting with a card network's
# major industry identifier (3 to 6), Luhn-valid. Timestamps and epoch milliseconds start
# with 1 or 2, so they are not taken for card numbers.
_CARD_NUMBER_IN_TEXT = re.compile(r"(?<![0-9A-Za-z])[3-6]\d{12,18}(?![0-9A-Za-z])")


def luhn_check_digit(partial: str) -> str:
    """The digit that makes `partial` + digit pass the Luhn check."""
    total = 0
    for position, char in enumerate(reversed(partial)):
        digit = int(char)
        if position % 2 == 0:  # doubled: these sit at odd positions once the check digit is added
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return str(-total % 10)


def luhn_valid(pan: str) -> bool:
    return len(pan) >= 2 and pan.isdigit() and luhn_check_digit(pan[:-1]) == pan[-1]


def mask_pan(pan: str) -> str:
    if len(pan) < 13:
        return "*" * len(pan)
    return f"{pan[:6]}{'*' * (len(pan) - 10)}{pan[-4:]}"


def _is_card_number(digits: str) -> bool:
    return luhn_valid(digits) and not digits.startswith(TOKEN_BINS)


def full_card_numbers_in(text: str) -> list[str]:
    """Every full card number (not a wallet token) that `text` shows."""
    return [n for n in _CARD_NUMBER_IN_TEXT.findall(text) if _is_card_number(n)]


def mask_card_numbers_in(text: str) -> str:
    """`text` with every full card number masked (log lines, error messages)."""
    return _CARD_NUMBER_IN_TEXT.sub(
        lambda found: mask_pan(found[0]) if _is_card_number(found[0]) else found[0], text)
