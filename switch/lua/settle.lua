-- Clearing of ordinary refunds: pending credit becomes a reduction of posted (below zero
-- when the card was repaid meanwhile: a credit balance, see repay.lua). A statement cycle
-- that ended closes first (statement.lua).
-- KEYS[1] card hash; ARGV[1] now (ms). Returns the fen settled.
register('settle', function()
  local card_key = KEYS[1]
  close_statements(card_key, tonumber(ARGV[1]))
  local credit = tonumber(redis.call('HGET', card_key, 'pending_credit') or '0')
  -- Nothing to settle writes nothing (and -0 is no integer to Redis).
  if credit > 0 then
    redis.call('HINCRBY', card_key, 'posted', -credit)
    redis.call('HINCRBY', card_key, 'pending_credit', -credit)
    -- Counted, so a void of a refund knows its credit was cleared since (void.lua).
    redis.call('HINCRBY', card_key, 'clearings', 1)
  end
  return credit
end)
