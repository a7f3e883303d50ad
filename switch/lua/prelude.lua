-- Shared by every ledger script (switch/ledger.py prepends it).
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
-- ARGV[18] number of counters, ARGV[19..] one per counter: its 8 values joined by '|'
-- (switch/ledger.py Counter, counter_arg).
local card_key, idem_key, txn_key, index_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local holds_key, counters_key = KEYS[5], KEYS[6]
local now_ms, this_month, sent_expiry = ARGV[1], ARGV[2], ARGV[3]
local auth_id, amount, fingerprint = ARGV[4], tonumber(ARGV[5]), ARGV[6]
local rule_code, rule_reason, idem_ttl_s = ARGV[7], ARGV[8], tonumber(ARGV[9])
local partial_ok, beans_per_yuan, instant = ARGV[10] == '1', tonumber(ARGV[11]), ARGV[12] == '1'
local names_original, hold_life_ms = ARGV[14] == '1', tonumber(ARGV[15])
local capture_tolerance_pct = tonumber(ARGV[16])

local STATUS_DECLINES = {
  lost = {'41', 'card_lost'}, stolen = {'43', 'card_stolen'},
  frozen = {'62', 'card_frozen'}, restricted = {'62', 'card_restricted'},
  inactive = {'62', 'card_not_activated'}, expired = {'54', 'card_expired'},
}

local function num(key, field)
  return tonumber(redis.call('HGET', key, field) or '0')
end

local function open_to_buy()
  local otb = num(card_key, 'limit') - num(card_key, 'posted') - num(card_key, 'held')
  if otb < 0 then return 0 end
  return otb
end

-- Bugs of ours fail loudly: the script errors and the engine answers 96.
local function check_invariants()
  if num(card_key, 'posted') < 0 or num(card_key, 'held') < 0 then
    error('ledger invariant broken on ' .. card_key)
  end
end

-- Every answer is remembered under the idempotency key, so a repeat gets it again.
local function answer(code, approved, reason, beans, auth)
  check_invariants()
  local otb = open_to_buy()
  redis.call('HSET', idem_key, 'fp', fingerprint, 'code', code, 'approved', approved,
    'otb', otb, 'auth', auth or '', 'reason', reason, 'beans', beans or 0)
  redis.call('EXPIRE', idem_key, idem_ttl_s)
  return {code, approved, otb, auth or '', reason, beans or 0, 0}
end

local function decline(code, reason)
  return answer(code, 0, reason, 0, '')
end

-- A repeat: the first answer, unchanged; a different request under the same key: 94.
local function earlier_answer()
  local first = redis.call('HMGET', idem_key, 'fp', 'code', 'approved', 'otb', 'auth',
    'reason', 'beans')
  if not first[1] then return nil end
  if first[1] ~= fingerprint then
    return {'94', 0, open_to_buy(), '', 'duplicate_key_mismatch', 0, 1}
  end
  return {first[2], tonumber(first[3]), tonumber(first[4]), first[5], first[6],
    tonumber(first[7]), 1}
end

-- nil when the card may be used for a new transaction, else {code, reason}.
local function card_refusal(check_status)
  if redis.call('EXISTS', card_key) == 0 then return {'14', 'card_unknown'} end
  if not check_status then return nil end
  local status, expiry = unpack(redis.call('HMGET', card_key, 'status', 'expiry'))
  local refusal = STATUS_DECLINES[status]
  if refusal then return refusal end
  if status ~= 'active' then return {'62', 'card_status_' .. tostring(status)} end
  -- YYMM compares as a number; a card is good through the end of its expiry month.
  if tonumber(expiry) < tonumber(this_month) then return {'54', 'card_expired'} end
  if sent_expiry ~= '' and sent_expiry ~= expiry then return {'54', 'expiry_mismatch'} end
  return nil
end

local function beans_for(fen)
  return math.floor(fen / 100) * beans_per_yuan
end

-- Beans follow the money that stays posted: earned on posting, taken back on release.
local function rebalance_beans(record_beans_before, posted_now, rate)
  local target = math.floor(posted_now / 100) * rate
  local delta = target - record_beans_before
  redis.call('HINCRBY', card_key, 'beans', delta)
  redis.call('HSET', txn_key, 'beans', target)
  return delta
end

