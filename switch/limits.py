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

# A connection with nothing in flight and no whole frame for this long is closed. (config)
idle_timeout_s = 300.0

# A frame must arrive whole within this from its first byte, or the connection is cut (and
# the partial frame decides nothing). A request is a few hundred bytes: even a 2,400-baud
# POS line sends one in about 2 s, so a frame still incomplete after 10 s is a peer holding
# a connection open byte by byte (slowloris), not a slow line. (config)
frame_deadline_s = 10.0

# Requests one connection starts in one event-loop tick; the rest of a read waits for the
# next tick (and the connection is not read meanwhile), after every other connection's
# events. One read can carry hundreds of frames (thousands of small bad ones): taken at
# once, they held the loop, and every other client, for hundreds of ms. 64 is a millisecond
# or two of decoding, and still a full pipeline to Redis per tick.
frames_per_tick_max = 64

# Answers waiting in a connection's write buffer (ours, beyond the kernel's socket buffer):
# above the high-water mark the connection is not read any more, so a peer that sends but
# does not read cannot make us hold its answers without bound; reading resumes once the
# buffer is down to the low-water mark. 64 KiB is a few hundred answers, more than a reading
# peer ever leaves unread between two loop ticks; the low mark a quarter of it, so reading
# resumes once most is read rather than flapping at every answer. (config)
write_buffer_high_water_bytes = 64 * 1024
write_buffer_low_water_bytes = 16 * 1024

# The kernel's own send buffer of a connection (SO_SNDBUF; Linux doubles it), before the
# write buffer above. Left to autotuning it grows to 4 MiB (net.ipv4.tcp_wmem): some 14,000
# answers a peer that does not read gets decided, at full speed and at every other client's
# expense, before our bound sees anything. 256 KiB is still some 800 answers, more than the
# in-flight bound's, and a 100 ms round trip at 2.5 MB/s. 0 leaves it to the kernel. (config)
socket_send_buffer_bytes = 256 * 1024

# A connection whose output has stayed paused (above the high-water mark) this long is
# aborted: its peer reads nothing, and every channel gives up on an answer after a few
# seconds (our own deadline is 2 s), so what waits is of no use to it any more. (config)
write_paused_max_s = 10.0

# The whole decision, Redis included, must finish within this or the request is answered
# 91 (issuer unavailable). Card networks stand in after a few seconds; we answer well
# before. (config)
request_deadline_ms = 2000

# A ledger call may act in Redis only until this long before its request's deadline (the
# call's fence, in Redis' clock; past it the Lua answers 91 and writes nothing): the margin
# for the reply to come back and be read before the switch answers 91 itself. A reply later
# than that is the rare case Ledger.void undoes. A deadline under twice this keeps half of it
# as the margin instead (switch/ledger.py fence_guard_ms). (config)
ledger_fence_guard_ms = 250

# On a Redis Cluster, answer no approval before this many replicas of its master have its
# write (`WAIT`; docs/cluster.md). 0: answer as soon as the master has it. (config,
# `switch serve --durable-replicas N`)
durable_replicas = 0

# How long a batch's WAIT for those replicas may take at most (less when its requests'
# fences come sooner); fewer replicas by then: its approvals are voided and answered 91.
# Loopback replication takes well under a millisecond; a replica across a data centre a
# few. (config)
durable_wait_ms = 100

# The offset between Redis' clock and ours is measured as each link opens and again this
# often while it lives: a step or drift of Redis' host clock shifts the fences for at most
# this long.
redis_clock_check_interval_s = 30.0

# A clock reading whose round trip took longer than this is poor: the offset it gives could
# be early by the whole round trip (a stalled event loop), and every fence with it, so it is
# taken only over a poorer one and read again with the next calls. A few ms is a slow
# network; 50 ms is a stall.
redis_clock_round_trip_max_ms = 50

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

# Redis Cluster (docs/cluster.md). A private cluster node (tests, benches) takes a peer that
# has not answered this long for failing: short, so a test's failover is quick; long enough
# that a busy two-core machine does not fail a live node.
cluster_node_timeout_ms = 5000
# Forming a private cluster (slots assigned, nodes met, every node cluster_state:ok) takes
# well under a second on an idle machine; a loaded one gets this long.
cluster_form_timeout_s = 20.0
# A ledger call redirected (MOVED, ASK) more times than this fails: the slot map kept
# changing under it (a resharding moves a slot once; a handful of hops covers a map refresh
# racing a second move).
cluster_redirects_max = 5
# A call answered TRYAGAIN (its slot is half migrated: some of its keys moved, some not) is
# sent again after this long, until it runs or its request's deadline passes (its fence then
# refuses it in Redis). MIGRATE moves one batch of keys in well under this.
cluster_tryagain_delay_s = 0.005
# A call answered CLUSTERDOWN (the master sees a slot unserved: a master failing, its replica
# not yet promoted) did not run; it is sent again after this long, until it runs or its
# request's deadline passes. A failover ends within about a second of the failure being
# agreed; ten tries a second keep a down cluster from being flooded with every call's retry.
cluster_down_retry_s = 0.1

# x-pay token keys cached in the switch process. A token's key never changes (a new key means
# a new token), so caching saves a Redis round trip per wallet payment; the bound keeps the
# cache's memory flat however many tokens pass.
token_key_cache_max = 100_000

# A newly provisioned wallet token is valid this long unless the CLI says otherwise.
token_lifetime_months = 36

# --- terminals' MAC keys (switch/terminal_keys.py)

# Terminal keys cached in each switch process: one entry per terminal seen, about 300 bytes;
# the bound keeps the memory flat however many terminals connect.
terminal_keys_cached_max = 100_000

# How old a cached key may be: a key changed in Redis other than by a rotation (replaced by
# hand, or a second rotation inside the first's grace period) is noticed within this.
terminal_key_cache_ttl_s = 30.0

# A MAC that fails under a cached key is checked against Redis again (a rotation a moment
# ago) only when the entry is at least this old: a flood of bad MACs then costs Redis at most
# one read per terminal per interval, while a terminal rotated a second ago is never refused.
terminal_key_recheck_min_ms = 200

# After `switch terminal rotate`, the previous key is still accepted this long: terminals
# with messages in flight, or that pick the new key up at their next sign-on, are not cut
# off. Ten minutes covers a terminal's sign-on cycle between two batches; longer would keep
# a key that may have leaked in use.
terminal_key_rotation_grace_s = 600.0

# --- terminal batches and settlement (switch/batches.py, switch/lua/batch.lua)

# Entries of one terminal's batch, and of its upload: a POS batch is a day's or a shift's
# transactions of one terminal, hundreds at most (F48 counts to 999 per side); ten thousand
# leaves room and bounds the memory a terminal that never settles can take. Past it an
# entry is refused and the batch marked: its settlement then answers 95, never a false 00.
batch_entries_max = 10_000

# A batch's keys live this long after their last write: a terminal settles daily, and a
# week covers a long weekend and the operator's look at a batch that did not balance.
batch_ttl_s = 7 * 24 * 3600

# A terminal's session (its working keys from a sign-on, switch/terminal_sessions.py) lasts
# this long in Redis unless it signs off or changes keys first: UnionPay terminals sign on
# at least once a day, so a day's keys that leaked stop working by the next day.
terminal_session_life_s = 86_400

# --- PINs (switch/pins.py)

# PBKDF2-HMAC-SHA256 rounds of a card's PIN hash. A 4-6 digit PIN has at most a million
# values, so no number of rounds makes a stolen hash safe (the defence is that hashes stay
# in Redis and guesses are counted); the rounds keep the PIN out of clear text and make
# each offline guess cost about a millisecond of CPU, which a PIN payment pays once, off
# the event loop (docs/performance.md has the figure).
pin_hash_rounds = 2_000
pin_salt_bytes = 16  # per card, random, made anew with each new PIN

# The EMV application transaction counter (tag 9F36) is two bytes.
atc_max = 0xFFFF

# `switch card force --times N`: a count a test script states, not a load run's; a million
# covers any scripted run, and a larger number is more likely a typo than a plan (leave
# --times out to force every request until cleared).
forced_times_max = 1_000_000

# `switch card force --delay-ms`, a fault rule's delay_ms: the longest wait before a forced
# answer. Whatever the setting, the answer never waits past the request's deadline
# (request_deadline_ms): a delay that reaches it is answered 91 at the deadline, as a slow
# issuer's would be (switch/server.py), so this bound only catches typos: a minute is
# longer than any channel waits for an answer.
forced_delay_max_ms = 60_000

# Fault rules in force at once (switch/faults.py): each matching costs every request a few
# comparisons per rule; a test plan names a handful, and a hundred is more than any one
# plan keeps apart.
fault_rules_max = 100
# A fault rule's use the request's answer did not spend is given back off the answer's path
# (switch/faults.py FaultSet.give_back): a Redis that fails that call has it tried again this
# many times in all, this long apart (a give-back is once per attempt, so trying again never
# gives two); past them the use stays taken (the rule answers one time fewer), logged.
fault_give_back_tries = 4
fault_give_back_retry_s = 0.5
# A worker that found a rule's uses spent asks Redis no more for it (no call per matching
# request) until the rule set changes or this long has passed: a use a void gives back is
# taken again within it. Longer saves calls on a spent rule matching heavy load (one per
# rule per worker per interval), shorter finds a given-back use sooner.
fault_spent_recheck_s = 1.0

# A change every worker must take before its command returns (the test clock, `switch
# clock`; the fault rules, `switch fault`: switch/announce.py): the command waits this long
# for every worker's acknowledgement (a worker takes it within a Redis round trip; more means
# a stuck listener, said so), looking every poll interval.
announce_ack_wait_s = 5
announce_ack_poll_s = 0.005
# A worker whose subscription to those announcements was lost (Redis restarted, the
# network gone) subscribes again, waiting first this long and twice as long after each
# failure, never longer than the max: back within a second of Redis answering again, at a
# cost of one connection attempt a second while it does not.
announce_resubscribe_first_s = 0.05
announce_resubscribe_max_s = 1.0

# The test clock's offset from real time is bounded by ten years: past a card's validity,
# further is more likely a typo than a test.
test_clock_offset_max_ms = 3650 * 24 * 3600 * 1000

# --- stand-in processing and store-and-forward (switch/standin.py, journal.py, forwarder.py)

# Records one store-and-forward journal holds until forwarded (stand-in advices and voids of
# requests answered 91). About 400 bytes each: 40 MB at the bound. Past it, stand-in answers
# 91 rather than approve what it cannot record.
saf_journal_records_max = 100_000

# Of those, the last ones are kept for voids: a request answered 91 whose ledger call may
# have run must be recorded to be undone, and must not find the journal full of approvals.
saf_void_reserve_records = 10_000

# One record: a request's fields are bounded by the frame size; a length above this in a
# journal is a torn or damaged record, not a record to read.
saf_record_size_max_bytes = 64 * 1024

# Journal files per run directory (one per worker process; a restarted worker takes over a
# free one). Far above any worker count this machine can run.
saf_journals_max = 256

# While records wait, Redis is probed this often, each probe bounded by the timeout, so the
# forwarder starts within about a second of Redis coming back.
saf_probe_interval_s = 0.5
saf_probe_timeout_s = 1.0

# The forwarder writes its cursor (an fsync) after this many records, and at the end: a
# crash replays at most these again, which the ledger's idempotent functions absorb.
saf_cursor_every_records = 256

# Card statuses remembered from the ledger's answers, for stand-in decisions; the bound keeps
# the cache's memory flat (about 200 bytes a card) however many cards pass.
stand_in_cards_cached_max = 200_000

# `switch audit`: cards asked of each SCAN and read in one pipeline; enough to keep Redis'
# round trips few, small enough that one batch's replies stay a few MB.
audit_scan_batch_cards = 500

# `switch audit`: transaction records read in one pipeline; a card may have many, and one
# pipeline's replies are held in memory at once.
audit_pipeline_commands_max = 10_000

# `switch audit`: a card that looks broken is read again under WATCH until no change
# interrupts the read; a switch busy on that card may interrupt each, so the rereads stop.
audit_rereads_max = 5

# `switch audit`: how long the replies to one batch of reads may take before the audit gives
# up on a Redis that stopped answering (exit 2); a batch is read in well under a second.
audit_reply_timeout_s = 30.0

# `switch audit`: a progress line on stderr every this many cards (a large ledger takes a
# while; a demo's few cards print none).
audit_progress_every_cards = 10_000

# With Redis unreachable every request fails the same way: the listener logs it once per
# interval (with the count since), not once per request.
unavailable_log_interval_s = 1.0

# Admin API (switch/admin/): a request body larger than this is refused; the largest the API
# takes is a card change or an upgrade, well under a kilobyte.
admin_body_max_bytes = 16 * 1024

# /readyz: how long Redis may take to answer its probe before the switch says it is not
# ready; a healthy Redis answers in a millisecond, a load balancer probes every few seconds.
admin_probe_timeout_s = 2.0

# `--workers N`: each worker writes its counts for the admin API's /metrics this often
# (switch/admin/shared.py): a scrape shows the other workers' counts at most this old, and
# the dashboard reads once a second. A write is a few kilobytes.
admin_share_interval_s = 1.0

# The statement day a new card gets unless the config's [cards] or `card set --statement-day`
# says otherwise: the 5th, a common one among Chinese issuers (switch/statement.py).
statement_day_default = 5
# Statement days a card may have: 1..28, the days every month has, as issuers allow, so a
# cycle is always about a month.
statement_day_min = 1
statement_day_max = 28

# A repayment's reference (`card repay --ref`): a bank's payment ids are a few dozen
# characters; more is a mistake, not an id.
repayment_ref_max_chars = 64

# --- recording (`switch serve --record DIR`, switch/recorder.py) -------------------------

# Exchanges waiting in memory for the recorder's writer thread. About 1 KB each with their
# messages: some 50 MB at the bound, two seconds of a saturated switch. Past it an exchange
# is counted and dropped, never waited for: recording must not slow the answers.
record_buffer_records_max = 50_000

# The writer thread writes what waits this often: the buffer's fill stays a fraction of its
# bound at any rate this machine serves, and a stopped switch loses nothing (it writes the
# rest as it stops).
record_flush_interval_s = 0.05

# Exchanges the writer encodes into one frame (one checksum, one encoder call): the
# writer's cost per exchange is mostly per frame below a few hundred.
record_batch_records_max = 256

# One recording file, and all of a switch's files together (--record-max-mb; a worker of
# --workers N keeps its share). The oldest file goes when the total is past the bound.
record_file_max_bytes = 64 * 1024 * 1024
record_total_max_bytes = 1024 * 1024 * 1024

# The snapshot of the ledger taken as a recording begins (for `switch replay --restore`):
# every key of cards, tokens and id claims, DUMPed. Past this many keys none is taken (the
# recording goes on, a warning says so): it is meant for test-sized ledgers.
record_snapshot_keys_max = 200_000

# Dropped exchanges (buffer full) are logged at most once per interval, with the count.
record_drop_log_interval_s = 1.0

# `switch replay`: a request waiting on an earlier one (its connection's previous request, or
# one answered before it arrived) waits at most that one's timeout and this margin; past it,
# it goes anyway and its diff shows what the broken order did.
replay_wait_margin_s = 1.0

# `switch replay`: a progress line on stderr at most this often (only on long replays).
replay_progress_interval_s = 1.0

# Messages one `switch conform` run keeps to check later ones against (ids, originals,
# repeats) and to report on. A conformance run is a few dozen messages; past 100,000 the
# adapter is being load tested, not certified: the switch still answers every message, the
# kit checks no more of them and says so.
conform_messages_max = 100_000
