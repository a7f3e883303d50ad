-- Authorization (places a hold) or sale (posts at once). ARGV[13]: 'auth' or 'sale'.
local kind = ARGV[13]
local now = tonumber(now_ms)

-- The policy's counters (switch/ledger.py Counter): per counter a ring of `buckets` fields
-- '<field>:<slot>' in counters_key, each 'bucket:count:fen'. A bucket is
-- floor((now + offset) / bucket_ms) and lives in slot bucket % buckets; the window is the
-- current bucket and the buckets - 1 before it. A ring keeps the hash small and bounded.
local FIRST_COUNTER_ARG = 19
local COUNTER_PATTERN = '^([^|]+)|(%d+)|(%d+)|(%d+)|(%d+)|(%d+)|([^|]+)|([^|]+)$'
local counter_count = tonumber(ARGV[18])
local counter_slots = {}  -- per counter: {slot field, current bucket, count, fen there now}

-- Every counter's ring, read with one HMGET. A ring: {first index into the values, buckets,
-- current bucket, field prefix, count max, amount max, count reason, amount reason}.
local function read_rings()
  local fields, rings = {}, {}
  for i = 1, counter_count do
    local field, bucket_ms, buckets, offset_ms, count_max, amount_max, count_reason,
      amount_reason = string.match(ARGV[FIRST_COUNTER_ARG + i - 1], COUNTER_PATTERN)
    buckets = tonumber(buckets)
    local current = math.floor((now + tonumber(offset_ms)) / tonumber(bucket_ms))
    rings[i] = {#fields + 1, buckets, current, field, tonumber(count_max),
      tonumber(amount_max), count_reason, amount_reason}
    for slot = 0, buckets - 1 do fields[#fields + 1] = field .. ':' .. slot end
  end
  return rings, redis.call('HMGET', counters_key, unpack(fields))
end

local function window_totals(ring, values)
  local first, buckets, current, field = ring[1], ring[2], ring[3], ring[4]
  local count, fen, here_count, here_fen = 0, 0, 0, 0
  for slot = 0, buckets - 1 do
    local value = values[first + slot]
    if value then
      local bucket, n, f = string.match(value, '^(%d+):(%d+):(%d+)$')
      bucket, n, f = tonumber(bucket), tonumber(n), tonumber(f)
      if bucket > current - buckets and bucket <= current then
        count, fen = count + n, fen + f
      end
      if bucket == current then here_count, here_fen = n, f end
    end
  end
  return count, fen, {field .. ':' .. (current % buckets), current, here_count, here_fen}
end

-- {code, reason} of the first counter this approval would pass, else nil.
local function counters_refusal()
  if counter_count == 0 then return nil end
  local rings, values = read_rings()
  for i = 1, counter_count do
    local ring = rings[i]
    local count, fen, slot = window_totals(ring, values)
    counter_slots[i] = slot
    if ring[5] > 0 and count + 1 > ring[5] then return {'65', ring[7]} end
    if ring[6] > 0 and fen + amount > ring[6] then return {'61', ring[8]} end
  end
  return nil
end

local function count_approval(approved)
  if counter_count == 0 then return end
  local pairs_ = {}
  for _, slot in ipairs(counter_slots) do
    local field, current, n, f = slot[1], slot[2], slot[3], slot[4]
    pairs_[#pairs_ + 1] = field
    pairs_[#pairs_ + 1] = string.format('%d:%d:%d', current, n + 1, f + approved)
  end
  redis.call('HSET', counters_key, unpack(pairs_))
  redis.call('PEXPIRE', counters_key, ARGV[17])
end

local ended = opening(true)
if ended then return ended end
if redis.call('EXISTS', txn_key) == 1 then return decline('94', 'duplicate_reference') end
local over = counters_refusal()
if over then return decline(over[1], over[2]) end

local otb = open_to_buy()
local approved, code = amount, '00'
if amount > otb then
  if not partial_ok or otb == 0 then return decline('51', 'insufficient_open_to_buy') end
  approved, code = otb, '10'
end

local beans = 0
if kind == 'auth' then
  local deadline = string.format('%d', now + hold_life_ms)
  move('held', approved)
  redis.call('HSET', txn_key, 'kind', kind, 'state', 'pending', 'amount', approved,
    'hold', approved, 'posted', 0, 'refunded', 0, 'auth', auth_id, 'created', now_ms,
    'rate', beans_per_yuan, 'beans', 0, 'expires', deadline)
  redis.call('ZADD', holds_key, deadline, txn_key)
else
  move('posted', approved)
  redis.call('HSET', txn_key, 'kind', kind, 'state', 'captured', 'amount', approved,
    'hold', 0, 'posted', approved, 'refunded', 0, 'auth', auth_id, 'created', now_ms,
    'rate', beans_per_yuan, 'beans', 0)
  beans = rebalance_beans(0, approved, beans_per_yuan)
end
redis.call('ZADD', index_key, now_ms, txn_key)
count_approval(approved)
if open_to_buy() ~= otb - approved then error('open-to-buy did not drop by the approval') end
return answer(code, approved, '', beans, auth_id)
