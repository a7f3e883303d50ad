-- Shared by the ledger's functions (first in the library, switch/lua_library.py).
-- Stale holds expired per call: bounds the call; any more go at the next one.
local HOLD_EXPIRY_BATCH = 64

-- Pre-authorization holds whose deadline has passed give their open-to-buy back. Every
-- call on a card that holds something expires its due holds first (lazily, with the
-- request's clock), so a decision sees no stale hold; `switch card show` runs the same step (expire.lua).
-- Returns how many holds it took off the card's list.
local function expire_holds(card_key, holds_key, now_ms)
  local due = redis.call('ZRANGEBYSCORE', holds_key, '-inf', now_ms, 'LIMIT', 0,
    HOLD_EXPIRY_BATCH)
  for _, key in ipairs(due) do
    local state, hold = unpack(redis.call('HMGET', key, 'state', 'hold'))
    if state == 'pending' then
      redis.call('HINCRBY', card_key, 'held', -tonumber(hold))
      redis.call('HSET', key, 'state', 'expired', 'hold', 0)
    end
    redis.call('ZREM', holds_key, key)
  end
  return #due
end
