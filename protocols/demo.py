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
