"""The demo merchants: what the switch serves with no configuration (`make run`) and what its
clients sign with unless told otherwise (`switch send`, the load generator). Sample values,
public on purpose: a real deployment configures its own.
"""

from __future__ import annotations

# The demo JD merchant and its HMAC-SHA256 key.
DEMO_JD_MERCHANT = "110000001"
DEMO_JD_KEY = "demo-jd-key-change-me"

# The demo WeChat Pay merchant (a supermarket, MCC 5411); the ids are WeChat's sample ones.
DEMO_WECHAT_MCH_ID = "1900000109"
DEMO_WECHAT_APPID = "wx2421b1c4370ec43b"
DEMO_WECHAT_KEY = "demo-wechat-key-change-me"
DEMO_WECHAT_MCC = "5411"

# The demo terminals of the ISO 8583 listeners: acquirer (F32), terminal (F41), MAC algorithm
# and key (docs/channels/pos.md). The keys are the standards' own example keys (X9.19's
# double-length DES key, KCV 08D7B4; GB/T 32907's SM4 key), so any tool can check them.
DEMO_ACQUIRER = "00010000"  # a UnionPay institution code (4 institution + 4 area)
DEMO_POS_TERMINAL = "TERM0001"
DEMO_POS_MAC = ("x9.19", "0123456789ABCDEFFEDCBA9876543210")
DEMO_XPAY_TERMINAL = "XPAY0001"  # the acquirer's wallet gateway
DEMO_XPAY_MAC = ("sm4", "0123456789ABCDEFFEDCBA9876543210")

# Ready-made test cards, like a card sandbox's: each always answers one outcome, on every
# channel, whatever is asked (`switch serve --demo` loads them; a scenario names them with
# `test_card`). The number ends with the code it answers; 99 is never answered at all (the
# client's timeout and reversal path). Test numbers, public on purpose: they are in the docs.
# (card number, outcome: a declining response code or NO_ANSWER_OUTCOME, what it stands for)
NO_ANSWER_OUTCOME = "no answer"
TEST_CARDS = (
    ("6253680000000059", "05", "do not honour"),
    ("6253680000000141", "14", "invalid card number"),
    ("6253680000000414", "41", "lost card"),
    ("6253680000000430", "43", "stolen card"),
    ("6253680000000513", "51", "insufficient funds"),
    ("6253680000000547", "54", "expired card"),
    ("6253680000000612", "61", "exceeds the amount limit"),
    ("6253680000000919", "91", "issuer inoperative"),
    ("6253680000000992", NO_ANSWER_OUTCOME, "never answered"),
)
TEST_CARD_LIMIT_FEN = 1_000_000  # enough that only the forced outcome can decline
