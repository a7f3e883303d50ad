-- Void: "the attempt with this auth id under this idempotency key did not happen"
-- (Ledger.void: the switch answered it 91, yet its call may have run before its fence).
-- KEYS[1] card hash, KEYS[2] the idempotency record, KEYS[3] the card's pending holds.
-- ARGV[1] the attempt's auth id. The transaction key comes from the remembered answer (it
-- is under the card's hash tag, so in the same cluster slot as the declared keys).
-- Returns 'voided' (undone), 'absent' (no answer remembered: the call never applied, and
-- its fence has passed), 'served' (a repeat was handed the answer: it stands), 'other'
-- (another attempt's answer), 'changed' (a later call changed the transaction since, or
-- clearing took the refund's credit). A forced answer voided gives its use of the card's
-- forced outcome back (the N of `switch card force --times N`, and its count).
-- Velocity counters stay counted: a counter window is a sum over buckets that may have been
-- closed since, and a voided approval that still counts can only make a later one refused
-- sooner, never let one pass a limit.
-- What a call that created a transaction record left in it, and so moved: {field, value,
-- ...} the record must still hold (else a later call changed it), and {field, delta, ...}
-- of the card. `approved` and `beans` are the call's answer's.
local function creation_of(kind, approved, beans)
  local a, b = tostring(approved), tostring(beans)
  if kind == 'auth' then
    return {'state', 'pending', 'hold', a, 'posted', '0', 'refunded', '0'}, {'held', approved}
  end
  return {'state', 'captured', 'hold', '0', 'posted', a, 'refunded', '0', 'beans', b},
    {'posted', approved, 'beans', beans}
end

register('void', function()
  local card_key, idem_key, holds_key, attempt = KEYS[1], KEYS[2], KEYS[3], ARGV[1]
  local stored = redis.call('GET', idem_key)
  if not stored then return 'absent' end
  local _, reply, its_attempt, served, moves, txn_key, before, after, card_expected, spec =
    cmsgpack.unpack(stored)
  if its_attempt ~= attempt then return 'other' end
  if served == 1 then return 'served' end
  for field, value in pairs(card_expected or {}) do  -- a refund's credit cleared since
    if (redis.call('HGET', card_key, field) or '0') ~= value then return 'changed' end
  end

  -- What the record must still hold: {field, value, ...}.
  local expected = {}
  if moves == false then
    local kind = redis.call('HGET', txn_key, 'kind')
    expected, moves = creation_of(kind, reply[2], reply[6])
  elseif moves then
    for field, value in pairs(after) do
      expected[#expected + 1], expected[#expected + 2] = field, value
    end
  else
    moves, txn_key = {}, ''
  end
  if #expected > 0 then
    local fields = {}
    for i = 1, #expected, 2 do fields[#fields + 1] = expected[i] end
    local now = redis.call('HMGET', txn_key, unpack(fields))
    for i, value in ipairs(now) do
      if value ~= expected[2 * i] then return 'changed' end
    end
  end

  for i = 1, #moves, 2 do
    -- Nothing moved writes nothing (and -0 is no integer to Redis).
    if moves[i + 1] ~= 0 then redis.call('HINCRBY', card_key, moves[i], -moves[i + 1]) end
  end
  local posted, held = unpack(redis.call('HMGET', card_key, 'posted', 'held'))
  if tonumber(held) < 0 or credit_beyond_repaid(card_key, tonumber(posted)) then
    error('ledger invariant broken by a void on ' .. masked(card_key))
  end
  if txn_key ~= '' then
    if not before then  -- the call made the record: it stays, voided, for the card's history
      redis.call('HSET', txn_key, 'state', 'voided', 'hold', '0', 'posted', '0', 'beans', '0')
    else
      local restore = {}
      for field, value in pairs(before) do
        restore[#restore + 1], restore[#restore + 2] = field, value
      end
      redis.call('HSET', txn_key, unpack(restore))
    end
    -- The holds index follows the record: a pending hold is listed by its deadline.
    local state, expires = unpack(redis.call('HMGET', txn_key, 'state', 'expires'))
    if state == 'pending' then
      redis.call('ZADD', holds_key, expires, txn_key)
    else
      redis.call('ZREM', holds_key, txn_key)
    end
    redis.call('HINCRBY', txn_key, 'voids', 1)
  end
  -- A forced answer taken back did not use up its forced outcome.
  if spec then give_back_force(card_key, spec) end
  redis.call('HINCRBY', card_key, 'voids', 1)
  redis.call('DEL', idem_key)
  return 'voided'
end)
