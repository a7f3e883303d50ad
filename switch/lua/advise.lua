-- Advice: a stand-in approval booked as it was answered (Ledger.advise), like an 0120/0220
-- advice: it records what the card holder was already told, so it applies whatever the
-- card's status, expiry, open-to-buy and velocity counters say (open-to-buy shows 0 when
-- over). KEYS and ARGV as prelude.lua's (ARGV[4] the stand-in's auth id, ARGV[5] the amount
-- it approved, ARGV[13] 'auth' or 'sale'), and KEYS[7] the advice's own record.
-- Returns 'applied'; 'repeat' when this advice was seen before; 'conflict' when the request's
-- idempotency key remembers an answer or its reference names a transaction already (the
-- books hold a decision for it); 'no_card' when the ledger has no such card.
register('advise', function()
  if begin() then return TOO_LATE end
  local advice_key = KEYS[7]
  if redis.call('EXISTS', advice_key) == 1 then return 'repeat' end
  if not load_current_card() then return 'no_card' end
  local outcome = 'applied'
  if redis.call('EXISTS', idem_key) == 1 or reference_taken() then
    outcome = 'conflict'
  else
    local beans = book(ARGV[13], amount)
    -- A repeat of the request gets the stand-in's answer; a void cannot take it back.
    answer('00', amount, '', beans, auth_id, 1)
  end
  redis.call('SET', advice_key, outcome, 'EX', idem_ttl_s)
  return outcome
end)
