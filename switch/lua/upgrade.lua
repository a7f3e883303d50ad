-- Upgrade of a Baitiao account into a card: the card and its limit appear in one step.
-- KEYS[1] the candidate card hash. ARGV: account, limit (fen), expiry YYMM, status, now (ms),
-- statement day, the first statement's close (ms; statement.lua).
-- 'created'; 'exists' when this account already has this card (nothing changes);
-- 'taken' when the number belongs to another card (the caller tries the next candidate).
register('upgrade', function()
  local card_key = KEYS[1]
  local account, limit, expiry, status, now_ms = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
  if redis.call('EXISTS', card_key) == 1 then
    if redis.call('HGET', card_key, 'account') == account then return 'exists' end
    return 'taken'
  end
  redis.call('HSET', card_key, 'limit', limit, 'posted', 0, 'held', 0, 'pending_credit', 0,
    'beans', 0, 'status', status, 'expiry', expiry, 'account', account, 'upgraded', now_ms,
    'statement_day', ARGV[6], 'cycle_end', ARGV[7])
  return 'created'
end)
