-- Authorization (places a hold) or sale (posts at once). ARGV[13]: 'auth' or 'sale'.
local kind, now  -- the running call's (set by the function below)

-- The policy's counters (switch/terms.py Counter). ARGV[18]: their definitions, one
-- JSON array of {field, bucket_ms, buckets, offset_ms, count max, amount max, count
-- reason, amount reason} ("" for none). A bucket is floor((now + offset) / bucket_ms); the
-- window is the current bucket and the buckets - 1 before it.
-- In counters_key, field F (the counter's field) holds msgpack {latest bucket, its count,
-- its fen, window count, window fen}: the common call reads and writes only that. When a
-- later bucket starts, the finished one is kept in field F#(bucket % buckets) and the
-- buckets that leave the window are read from theirs and subtracted, so the common call
-- reads no ring of buckets (docs/performance.md).
local counters  -- the running call's definitions
local windows  -- per counter: {bucket, count, fen, window count, window fen, kept}

-- Decoded definitions by their JSON: a policy has a handful of distinct ones, and decoding
-- them on every call is a cost the call need not pay (docs/performance.md). A cache of a
-- pure function of the argument: no ledger data lives here between calls.
local DEFINITIONS_KEPT_MAX = 256
local NO_COUNTERS = {}
local definitions, definitions_kept = {}, 0

local function counters_of(json)
  if json == '' then return NO_COUNTERS end
  local decoded = definitions[json]
  if not decoded then
    if definitions_kept >= DEFINITIONS_KEPT_MAX then definitions, definitions_kept = {}, 0 end
    decoded = cjson.decode(json)
    definitions[json], definitions_kept = decoded, definitions_kept + 1
  end
  return decoded
end

-- The sum of the finished buckets first .. last (only those on record) of counter `field`.
local function kept_totals(field, buckets, first, last)
  local fields = {}
  for bucket = first, last do fields[#fields + 1] = field .. '#' .. bucket % buckets end
  local count, fen, bucket = 0, 0, first
  for _, value in ipairs(redis.call('HMGET', counters_key, unpack(fields))) do
    if value then
      local kept, n, f = cmsgpack.unpack(value)
      if kept == bucket then count, fen = count + n, fen + f end
    end
    bucket = bucket + 1
  end
  return count, fen
end

-- The counter's window as of now: {bucket, count, fen, window count, window fen, the
-- finished bucket to keep (field, value) or nil}.
local function window_of(counter, value)
  local field, bucket_ms, buckets, offset_ms = counter[1], counter[2], counter[3], counter[4]
  local current = math.floor((now + offset_ms) / bucket_ms)
  if not value then return {current, 0, 0, 0, 0} end
  local bucket, n, f, count, fen = cmsgpack.unpack(value)
  -- A clock stepped back (or another worker's, a little behind) counts into the latest.
  if current <= bucket then return {bucket, n, f, count, fen} end
  local kept = nil
  if buckets > 1 then kept = {field .. '#' .. bucket % buckets, cmsgpack.pack(bucket, n, f)} end
  if current - bucket >= buckets then return {current, 0, 0, 0, 0, kept} end
  -- Buckets bucket - buckets + 1 .. current - buckets leave the window (all finished).
  local gone_count, gone_fen = kept_totals(field, buckets, bucket - buckets + 1,
    current - buckets)
  return {current, 0, 0, count - gone_count, fen - gone_fen, kept}
end

-- {code, reason} of the first counter this approval would pass, else nil.
local function counters_refusal()
  if #counters == 0 then return nil end
  local fields = {}
  for i, counter in ipairs(counters) do fields[i] = counter[1] end
  local values = redis.call('HMGET', counters_key, unpack(fields))
  for i, counter in ipairs(counters) do
    local window = window_of(counter, values[i])
    windows[i] = window
    local count_max, amount_max = counter[5], counter[6]
    if count_max > 0 and window[4] + 1 > count_max then return {'65', counter[7]} end
    if amount_max > 0 and window[5] + amount > amount_max then return {'61', counter[8]} end
  end
  return nil
end

local function count_approval(approved)
  if #counters == 0 then return end
  local pairs_ = {}
  for i, w in ipairs(windows) do
    pairs_[#pairs_ + 1] = counters[i][1]
    pairs_[#pairs_ + 1] = cmsgpack.pack(w[1], w[2] + 1, w[3] + approved, w[4] + 1,
      w[5] + approved)
    if w[6] then
      pairs_[#pairs_ + 1], pairs_[#pairs_ + 2] = w[6][1], w[6][2]
    end
  end
  redis.call('HSET', counters_key, unpack(pairs_))
  redis.call('PEXPIRE', counters_key, ARGV[17])
end

-- Whether the request's reference names a transaction already. A voided one did not happen:
-- its reference may be decided afresh.
local function reference_taken()
  local state = redis.call('HGET', txn_key, 'state')
  return state and state ~= 'voided'
end

-- A new transaction of `approved` fen: a hold (auth) or posted at once (sale). Returns the
-- beans it earned. (advise.lua books a stand-in approval the same way.)
local function book(kind, approved)
  local now = tonumber(now_ms)
  -- Literal zeros go to Redis as strings: a Lua number costs a '%.17g' formatting per
  -- argument, on the hot path.
  local beans = 0
  if kind == 'auth' then
    local deadline = string.format('%d', now + tonumber(hold_life_ms))
    move('held', approved)
    txn_create('kind', kind, 'state', 'pending', 'amount', approved,
      'hold', approved, 'posted', '0', 'refunded', '0', 'auth', auth_id, 'created', now_ms,
      'rate', beans_per_yuan, 'beans', '0', 'expires', deadline)
    redis.call('ZADD', holds_key, deadline, txn_key)
  else
    beans = beans_for(approved, tonumber(beans_per_yuan))
    move('posted', approved)
    card_add('beans', beans)
    txn_create('kind', kind, 'state', 'captured', 'amount', approved,
      'hold', '0', 'posted', approved, 'refunded', '0', 'auth', auth_id, 'created', now_ms,
      'rate', beans_per_yuan, 'beans', beans)
  end
  redis.call('ZADD', index_key, now_ms, txn_key)
  return beans
end

register('authorize', function()
  if begin() then return TOO_LATE end
  kind, now = ARGV[13], tonumber(now_ms)
  counters = counters_of(ARGV[18])
  windows = {}
  local ended = opening(true)
  if ended then return ended end
  if reference_taken() then return decline('94', 'duplicate_reference') end
  local over = counters_refusal()
  if over then return decline(over[1], over[2]) end

  local otb = open_to_buy()
  local approved, code = amount, '00'
  if amount > otb then
    if not partial_ok or otb == 0 then return decline('51', 'insufficient_open_to_buy') end
    approved, code = otb, '10'
  end

  local beans = book(kind, approved)
  count_approval(approved)
  if open_to_buy() ~= otb - approved then error('open-to-buy did not drop by the approval') end
  return answer(code, approved, '', beans, auth_id)
end)
