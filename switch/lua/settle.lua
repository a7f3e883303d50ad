-- Clearing of ordinary refunds: pending credit becomes a reduction of posted.
-- KEYS[1] card hash. Returns the fen settled.
register('settle', function()
  local card_key = KEYS[1]
  local credit = tonumber(redis.call('HGET', card_key, 'pending_credit') or '0')
  local posted = tonumber(redis.call('HGET', card_key, 'posted') or '0')
  if credit > posted then credit = posted end
  -- Nothing to settle writes nothing (and -0 is no integer to Redis).
  if credit > 0 then
    redis.call('HINCRBY', card_key, 'posted', -credit)
    redis.call('HINCRBY', card_key, 'pending_credit', -credit)
    -- Counted, so a void of a refund knows its credit was cleared since (void.lua).
    redis.call('HINCRBY', card_key, 'clearings', 1)
  end
  return credit
end)
