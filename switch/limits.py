"""Every limit of the switch, in one place, with its unit last and the reason it is what it is.

Config files may override the ones marked (config), in their [limits] section (switch/config.py
ServerLimits), and the switch passes the configured value down; the rest are properties of
the design.
"""

# A frame larger than any message a channel defines is a broken or hostile peer; 64 KiB is
# far above the largest ISO 8583 or JSON request we accept. (config)
frame_size_max_bytes = 64 * 1024

# Requests decoded but not yet answered on one connection; at the bound we stop reading
# until answers drain, so one fast client cannot queue unbounded work. (config)
inflight_per_connection_max = 256

# A connection with nothing in flight and no bytes for this long is closed. (config)
idle_timeout_s = 300.0

# The whole decision, Redis included, must finish within this or the request is answered
# 91 (issuer unavailable). Card networks stand in after a few seconds; we answer well
# before. (config)
request_deadline_ms = 2000

# On SIGTERM/SIGINT: stop accepting, then give answers in flight this long to go out. (config)
shutdown_grace_s = 5.0

# After the last answer, how long peers get to read it and close before we abort. (config)
shutdown_linger_s = 2.0

# Ledger calls waiting in one loop tick go to Redis in one pipeline; this caps one batch so
# a burst is split into pipelines Redis can answer without stalling others.
pipeline_batch_max = 512

# Redis connections in the pool; each carries one pipeline at a time.
redis_connections_max = 32

# How long to wait for a free Redis connection before the request fails (and answers 91).
redis_pool_wait_s = 2.0

# Answers are remembered this long for repeats; card networks retry within minutes.
idempotency_ttl_s = 24 * 3600

# Amounts above this are not a credit-card purchase on this product (limit <= 100,000 yuan).
amount_max_fen = 100_000 * 100

# Waiting for a private redis-server to accept connections.
redis_start_timeout_s = 10.0

# Waiting for a private redis-server to exit on SIGTERM: it writes out its AOF first, which
# takes well under a second for a demo's data; past this we kill it (what is written stays).
redis_stop_timeout_s = 10.0

# x-pay token keys cached in the switch process. A token's key never changes (a new key means
# a new token), so caching saves a Redis round trip per wallet payment; the bound keeps the
# cache's memory flat however many tokens pass.
token_key_cache_max = 100_000

# A newly provisioned wallet token is valid this long unless the CLI says otherwise.
token_lifetime_months = 36

# The EMV application transaction counter (tag 9F36) is two bytes.
atc_max = 0xFFFF
