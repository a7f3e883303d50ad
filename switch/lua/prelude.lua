-- Shared by the ledger's functions (switch/lua_library.py puts it after holds.lua in the library).
-- Every function starts with begin(), which checks the call's fence and reads its keys and
-- arguments into the locals below: defined once when the library loads, they are the running call's state.
-- KEYS[1] card hash {c:PAN}; KEYS[2] idempotency record; KEYS[3] transaction record;
-- KEYS[4] the card's transaction index (sorted set, score = creation time in ms),
-- KEYS[5] the card's pending holds (sorted set, score = expiry deadline in ms),
-- KEYS[6] the card's approval counters (hash, see authorize.lua).
-- ARGV[1] now (ms), ARGV[2] current month YYMM, ARGV[3] expiry sent (YYMM or ""),
-- ARGV[4] auth id for an approval, ARGV[5] amount (fen), ARGV[6] request fingerprint,
-- ARGV[7] rule decline code ("" when the rules passed), ARGV[8] its reason,
-- ARGV[9] idempotency record lifetime (s), ARGV[10] partial approval accepted (1/0),
-- ARGV[11] beans per yuan posted, ARGV[12] instant refund (1/0), ARGV[13] message class,
-- ARGV[14] the request names an original (1/0), ARGV[15] hold lifetime (ms),
-- ARGV[16] capture tolerance above the hold (percent), ARGV[17] counters lifetime (ms),
-- ARGV[18] the policy's counters, JSON (switch/terms.py counters_arg; "" for none),
-- ARGV[19] the request's channel (jd, wechat, pos, xpay; for a forced outcome's channel),
-- ARGV[20] the user the request names (JD userId; '' for none),
-- ARGV[21] the entered PIN's hash under the card's salt (switch/pins.py; "" when no PIN was
-- entered, "-" when the card has no PIN), ARGV[22] the PIN tries the card allows,
-- ARGV[23] a fault rule's forced outcome for this request, "code|delay ms|reason" ("" for
-- none: switch/faults.py),
-- ARGV[24] the call's fence: the instant of Redis' clock (ms, TIME) after which it must not
-- act (switch/ledger.py: the request's deadline less a guard, in Redis' clock; always last).
local card_key, idem_key, txn_key, index_key, holds_key, counters_key
local now_ms, this_month, sent_expiry, auth_id, amount, fingerprint
local rule_code, rule_reason, idem_ttl_s, partial_ok, beans_per_yuan, instant
local names_original, hold_life_ms, capture_tolerance_pct

local STATUS_DECLINES = {
  lost = {'41', 'card_lost'}, stolen = {'43', 'card_stolen'},
  frozen = {'62', 'card_frozen'}, restricted = {'62', 'card_restricted'},
  inactive = {'62', 'card_not_activated'}, expired = {'54', 'card_expired'},
}

-- The card's balances and state, read once per call with one HMGET (the hot path pays
-- per redis.call); every change goes through move(), which keeps the copy exact.
local card = nil

-- Set when the running call refuses the card (unknown, blocked, expired, or an expiry that
-- does not match: the sender did not prove the card): its answer shows no balance.
local card_refused = false

-- What the running call changed, kept with its remembered answer so that one undo
-- (void.lua, Ledger.void) can take back any call: the card's numbers it moved (field,
-- delta, ...), and its transaction record's fields before and after its writes. Written
-- only through card_add/move and txn_set. A call that creates a record (txn_create) keeps
-- no more than that: the new record itself says what it moved (void.lua), so the hot path
-- pays next to nothing to be voidable (docs/performance.md).
local undo_card, txn_before, txn_after, txn_created
-- Fields of the card a void needs unchanged ({field = value}), or nil (card_expect).
local card_expected

-- A call that runs past its fence answers 91 and writes nothing, not even its answer: the
-- switch answers the request 91 by its deadline, so acting now would charge a card holder
-- who was told "declined"; a repeat is decided afresh. (TIME in a function is the instant
-- the call started.)
local TOO_LATE = {'91', 0, 0, '', 'issuer_timeout', 0, 0}

-- The instant (Redis' clock, ms) the running call started.
local call_ms

-- `fence`: the call's fence argument (ARGV[24] of a card's call; repay.lua has its own).
local function past_fence(fence)
  local time = redis.call('TIME')
  call_ms = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
  return call_ms > tonumber(fence)
end

-- The running call's forced outcome, when one applied (a card's `switch card force`, or a
-- fault rule's in ARGV[23]): who forced it ('card' or 'rule'), the delay before the answer
-- goes out (ms, '' for none), the reason of a forced code; and the card's forced outcome as
-- it was before this call took one of its uses, for a void to give that use back (nil when
-- there is nothing to give back).
local forced_by, forced_delay, forced_reason, forced_spec

-- Every function starts with `if begin() then return TOO_LATE end`: true past the fence.
local function begin()
  if past_fence(ARGV[24]) then return true end
  card_key, idem_key, txn_key, index_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
  holds_key, counters_key = KEYS[5], KEYS[6]
  now_ms, this_month, sent_expiry = ARGV[1], ARGV[2], ARGV[3]
  auth_id, amount, fingerprint = ARGV[4], tonumber(ARGV[5]), ARGV[6]
  -- Kept as the strings Redis passed where they mostly travel back into a command; the
  -- arithmetic that needs them converts (tonumber costs a strtod on every call).
  rule_code, rule_reason, idem_ttl_s = ARGV[7], ARGV[8], ARGV[9]
  partial_ok, beans_per_yuan, instant = ARGV[10] == '1', ARGV[11], ARGV[12] == '1'
  names_original, hold_life_ms = ARGV[14] == '1', ARGV[15]
  capture_tolerance_pct = ARGV[16]
  card, card_refused = nil, false
  undo_card, txn_before, txn_after, txn_created = nil, nil, nil, false  -- made when used
  card_expected = nil
  forced_by, forced_delay, forced_reason, forced_spec = nil, nil, nil, nil
  return false
end

-- A statement cycle that ended closes before the call changes anything (statement.lua).
local function load_card()
  local v = redis.call('HMGET', card_key, 'limit', 'posted', 'held', 'status', 'expiry',
    'force', 'jd_user', 'cycle_end')
  if not v[1] then
    card = false
  else
    card = {limit = tonumber(v[1]), posted = tonumber(v[2]), held = tonumber(v[3]),
      status = v[4], expiry = v[5], force = v[6], jd_user = v[7]}
    if v[8] and tonumber(now_ms) >= tonumber(v[8]) then
      close_statements(card_key, tonumber(now_ms))
    end
  end
  return card
end

local function card_add(field, delta)  -- every change of the card's numbers
  redis.call('HINCRBY', card_key, field, delta)
  if not undo_card then undo_card = {} end
  undo_card[#undo_card + 1] = field
  undo_card[#undo_card + 1] = delta
end

local function move(field, delta)  -- field: 'posted' or 'held'
  card_add(field, delta)
  card[field] = card[field] + delta
end

-- Writes fields of the call's transaction record (name, value, ...): each field's value
-- before the call's first write of it is read first (one HMGET) and kept, with the new one.
local function txn_set(...)
  local fields = {...}
  if not txn_before then txn_before, txn_after = {}, {} end
  local unseen = {}
  for i = 1, #fields, 2 do
    if txn_before[fields[i]] == nil then unseen[#unseen + 1] = fields[i] end
  end
  if #unseen > 0 then
    local old = redis.call('HMGET', txn_key, unpack(unseen))
    for i, field in ipairs(unseen) do txn_before[field] = old[i] or '' end
  end
  for i = 1, #fields, 2 do txn_after[fields[i]] = tostring(fields[i + 1]) end
  redis.call('HSET', txn_key, unpack(fields))
end

-- A void of the running call must find the card's `field` as it is now (else it changes
-- nothing): for what a later call on the card, not on the transaction, builds on.
local function card_expect(field)
  card_expected = card_expected or {}
  card_expected[field] = redis.call('HGET', card_key, field) or '0'
end

-- A new transaction record (authorize.lua): a void of the call marks it voided.
local function txn_create(...)
  txn_created = true
  redis.call('HSET', txn_key, ...)
end

local function open_to_buy()
  if card == nil then load_card() end
  if not card then return 0 end
  local otb = card.limit - card.posted - card.held
  if otb < 0 then return 0 end
  return otb
end

-- The card, its due holds expired first. `held` is the sum of the pending holds, so a card
-- that holds nothing has none to expire and skips the lookup (most calls).
local function load_current_card()
  if load_card() and card.held > 0 and expire_holds(card_key, holds_key, now_ms) > 0 then
    load_card()
  end
  return card
end

-- The card's key as a log line may show it: first 6 and last 4 digits of its number.
local function masked(key)
  local pan = string.match(key, '^{c:(%d+)}$')
  if not pan or #pan < 13 then return '{c:?}' end
  return '{c:' .. string.sub(pan, 1, 6) .. string.rep('*', #pan - 10) .. string.sub(pan, -4) .. '}'
end

-- A credit balance (posted below zero) is money the card holder repaid (repay.lua), never
-- more: a purchase's net posting is never negative.
local function credit_beyond_repaid(key, posted)
  return posted < 0 and posted + tonumber(redis.call('HGET', key, 'repaid') or '0') < 0
end

-- Bugs of ours fail loudly: the call errors and the engine answers 96.
local function check_invariants()
  if card and (card.held < 0 or credit_beyond_repaid(card_key, card.posted)) then
    error('ledger invariant broken on ' .. masked(card_key))
  end
end

-- Every answer is remembered under the idempotency key (one string, msgpack), so a repeat
-- gets it again: fingerprint, reply, the attempt's auth id, served to a repeat (0/1), then
-- what the call changed: nothing more when nothing; false and the transaction key when it
-- created that record; else the card's moves, the transaction key ('' when untouched) and
-- the record's fields before and after, and the card's fields a void needs unchanged.
-- Last, the card's forced outcome whose use the call took (forced_spec; a void gives it back).
local function remember(reply, served, attempt, moves, txn, before, after, expected, spec)
  return cmsgpack.pack(fingerprint, reply, attempt, served, moves, txn, before, after,
    expected, spec)
end

-- What a forced reply carries back beyond the answer (and beyond what is remembered: a
-- repeat is neither delayed nor counted again): [8] the state ('' here), [9] the delay in
-- ms before answering, [10] who forced it.
local function with_forced(reply)
  if forced_by then
    reply[8], reply[9], reply[10] = reply[8] or '', forced_delay or '', forced_by
  end
  return reply
end

-- `served` (advise.lua): the answer was given already, so no void may take it back.
local function answer(code, approved, reason, beans, auth, served)
  check_invariants()
  local otb = 0
  if not card_refused then otb = open_to_buy() end
  local reply = {code, approved, otb, auth or '', reason, beans or 0, 0}
  local record
  if txn_created then
    record = remember(reply, served or 0, auth_id, false, txn_key, nil, nil, nil, forced_spec)
  elseif not (undo_card or txn_after) then
    record = remember(reply, served or 0, auth_id, nil, nil, nil, nil, nil, forced_spec)
  else
    local txn = ''
    if txn_after then
      txn = txn_key
      -- A later refund of the record changes only `refunded`: kept as this call left it,
      -- so a void of this call finds the record changed (void.lua) and lets it stand.
      if txn_after.refunded == nil then
        txn_after.refunded = redis.call('HGET', txn_key, 'refunded') or false
      end
    end
    record = remember(reply, served or 0, auth_id, undo_card or {}, txn, txn_before or {},
      txn_after or {}, card_expected or {}, forced_spec)
  end
  redis.call('SET', idem_key, record, 'EX', idem_ttl_s)
  return with_forced(reply)
end

local function decline(code, reason)
  return answer(code, 0, reason, 0, '')
end

-- A repeat: the first answer, unchanged; a different request under the same key: 94.
-- The answer is marked served: a client has seen it now, so no void may take it back.
local function earlier_answer()
  local stored = redis.call('GET', idem_key)
  if not stored then return nil end
  local first_fingerprint, reply, attempt, served, moves, txn, before, after, expected, spec =
    cmsgpack.unpack(stored)
  if first_fingerprint ~= fingerprint then
    return {'94', 0, 0, '', 'duplicate_key_mismatch', 0, 1}  -- no balance for a misfit
  end
  if served ~= 1 then
    redis.call('SET', idem_key, remember(reply, 1, attempt, moves, txn, before, after,
      expected, spec), 'KEEPTTL')
  end
  reply[7] = 1
  return reply
end

-- A card bound to a JD user (field jd_user): a JD request naming another user is refused,
-- and a JD balance inquiry must name it (the card number alone does not show its balance
-- to another account). Other channels do not name JD users. nil, or {code, reason}.
local function user_refusal()
  if not card.jd_user or ARGV[19] ~= 'jd' or ARGV[20] == card.jd_user then return nil end
  if ARGV[20] ~= '' then return {'57', 'user_card_mismatch'} end
  if ARGV[13] == 'inquiry' and not names_original then return {'57', 'user_required'} end
  return nil
end

-- nil when the card may be used for a new transaction, else {code, reason}.
local function card_refusal(check_status)
  if not card then return {'14', 'card_unknown'} end
  local user_refused = user_refusal()
  if user_refused then return user_refused end
  if not check_status then return nil end
  local refusal = STATUS_DECLINES[card.status]
  if refusal then return refusal end
  if card.status ~= 'active' then return {'62', 'card_status_' .. tostring(card.status)} end
  -- YYMM compares as a number; a card is good through the end of its expiry month.
  if tonumber(card.expiry) < tonumber(this_month) then return {'54', 'card_expired'} end
  if sent_expiry ~= '' and sent_expiry ~= card.expiry then return {'54', 'expiry_mismatch'} end
  return nil
end

-- A card's forced outcome (`switch card force`): field force = "code|times|channel" or
-- "code|times|channel|delay": code a declining one, NA (no answer), SI (stand-in) or ''
-- (decided as usual, only delayed); times '' for every request until cleared; channel ''
-- for every channel; delay in ms.
local FORCE_FORM = '^(%w*)|(%d*)|(%a*)|?(%d*)$'

local function force_text(code, times, channel, delay)
  local text = code .. '|' .. times .. '|' .. channel
  if delay ~= '' then text = text .. '|' .. delay end
  return text
end

-- The card's forced outcome when it applies to this request: its code ('' for a delay
-- alone), counting it (field forced) and taking one off its times. Its use is kept for a
-- void to give back (forced_spec), unless the delay itself runs the request past its fence
-- (then the 91 it earns at the deadline is the outcome the tester asked for).
local function forced_code()
  local code, times, channel, delay = string.match(card.force, FORCE_FORM)
  if not code or (channel ~= '' and channel ~= ARGV[19]) then return nil end
  if times == '1' then
    redis.call('HDEL', card_key, 'force')
  elseif times ~= '' then
    redis.call('HSET', card_key, 'force', force_text(code, tonumber(times) - 1, channel, delay))
  end
  redis.call('HINCRBY', card_key, 'forced', 1)
  if delay == '' or call_ms + tonumber(delay) <= tonumber(ARGV[24]) then
    forced_spec = card.force
  end
  forced_by, forced_delay, forced_reason = 'card', delay, 'forced'
  return code
end

-- The entered PIN (ARGV[21], its hash) against the card's: nil when right (its tries start
-- over), else {code, reason}. A wrong one counts a try; the try that reaches the limit
-- (ARGV[22]) and every PIN after it, right or wrong, are 75 until a new PIN is set. The
-- count is written directly, not through card_add: a void (void.lua) leaves it as it is, as
-- the PIN was entered whether or not its answer arrived (docs/reliability.md).
local function pin_refusal()
  local entered = ARGV[21]
  local stored, tries = unpack(redis.call('HMGET', card_key, 'pin_hash', 'pin_tries'))
  if entered == '-' or not stored then return {'55', 'pin_not_set'} end
  tries = tonumber(tries or '0')
  local tries_max = tonumber(ARGV[22])
  if tries >= tries_max then return {'75', 'pin_tries_exceeded'} end
  if entered == stored then
    if tries > 0 then redis.call('HSET', card_key, 'pin_tries', '0') end
    return nil
  end
  redis.call('HSET', card_key, 'pin_tries', tries + 1)
  if tries + 1 >= tries_max then return {'75', 'pin_tries_exceeded'} end
  return {'55', 'pin_wrong'}
end

-- A fault rule's forced outcome for this request (ARGV[23], "code|delay|reason"; the rule
-- was matched and its use taken by the switch: switch/faults.py), or nil.
local function rule_forced()
  if ARGV[23] == '' then return nil end
  local code, delay, reason = string.match(ARGV[23], '^(%w*)|(%d*)|(.+)$')
  if not code then error('malformed fault outcome ' .. ARGV[23]) end
  forced_by, forced_delay, forced_reason = 'rule', delay, reason
  return code
end

-- A void gives back the use its call took of the card's forced outcome `spec` (and its
-- count), when the card is still forced the same way (or no longer at all).
local function give_back_force(key, spec)
  local code, times, channel, delay = string.match(spec, FORCE_FORM)
  redis.call('HINCRBY', key, 'forced', -1)
  if times == '' then return end
  local now = redis.call('HGET', key, 'force')
  if not now then
    redis.call('HSET', key, 'force', force_text(code, 1, channel, delay))
    return
  end
  local code_now, times_now, channel_now, delay_now = string.match(now, FORCE_FORM)
  if code_now == code and channel_now == channel and delay_now == delay and times_now ~= '' then
    redis.call('HSET', key, 'force', force_text(code, tonumber(times_now) + 1, channel, delay))
  end
end

-- How every call starts: a repeat gets its first answer; due holds expire; a forced outcome
-- (a fault rule's, else the card's) answers, changing nothing else (SI: the switch's
-- stand-in decides, so nothing is remembered and the reply carries the card's status; a
-- delay alone lets the call go on); then the card checks (status too when `check_status`),
-- the PIN when one was entered, and the engine's rule decline. Returns the answer that ends
-- the call, or nil to go on. A card or PIN refusal shows no balance.
local function opening(check_status)
  local first = earlier_answer()
  if first then return first end
  load_current_card()
  local forced = rule_forced() or (card and card.force and forced_code())
  if forced == 'SI' then  -- the marker, not a response code: no answer goes out with it
    return with_forced({forced, 0, 0, '', forced_reason, 0, 0, '', '', '',
      card and card.status or ''})
  end
  if forced and forced ~= '' then return decline(forced, forced_reason) end
  local refusal = card_refusal(check_status)
  if not refusal and ARGV[21] ~= '' then refusal = pin_refusal() end
  if refusal then
    card_refused = true
    return decline(refusal[1], refusal[2])
  end
  if rule_code ~= '' then return decline(rule_code, rule_reason) end
  return nil
end

-- Beans follow the money that stays posted: earned on posting, taken back on release.
local function beans_for(posted, rate)
  return math.floor(posted / 100) * rate
end

local function rebalance_beans(record_beans_before, posted_now, rate)
  local target = beans_for(posted_now, rate)
  local delta = target - record_beans_before
  card_add('beans', delta)
  txn_set('beans', target)
  return delta
end

