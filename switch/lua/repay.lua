-- Repayment (Ledger.repay, `switch card repay`): the card holder pays back; posted falls and
-- open-to-buy rises at once, in this one call. More than is owed leaves posted below zero: a
-- credit balance (溢缴款) that open-to-buy counts, so it is spendable. Accepted whatever the
-- card's status (a blocked card's debt is still owed). A cycle that ended closes first, so
-- the repayment counts towards the statement it pays (statement.lua).
-- KEYS[1] card hash, KEYS[2] the repayment's record ({c:PAN}:t:repay:ID), KEYS[3] the card's
-- transaction index. ARGV[1] amount (fen), ARGV[2] now (ms), ARGV[3] the repayment's id,
-- ARGV[4] the call's fence (prelude.lua past_fence: Ledger.repay gives up waiting for the
-- reply soon after, so a call Redis runs later must not act behind the caller's back).
-- Returns {outcome, fen}: 'repaid' and the amount; 'repeat' (this id was repaid with this
-- amount before: nothing changes); 'mismatch' and the amount the id was repaid with (nothing
-- changes); 'no_card'; 'too_late' (past the fence: nothing changes, not even a repeat read).
register('repay', function()
  if past_fence(ARGV[4]) then return {'too_late', 0} end
  local card_key, txn_key, index_key = KEYS[1], KEYS[2], KEYS[3]
  local amount = tonumber(ARGV[1])
  local made = redis.call('HGET', txn_key, 'amount')
  if made then
    if tonumber(made) == amount then return {'repeat', amount} end
    return {'mismatch', tonumber(made)}
  end
  if redis.call('EXISTS', card_key) == 0 then return {'no_card', 0} end
  close_statements(card_key, tonumber(ARGV[2]))
  redis.call('HINCRBY', card_key, 'posted', -amount)
  redis.call('HINCRBY', card_key, 'repaid', amount)
  redis.call('HINCRBY', card_key, 'stmt_paid', amount)
  redis.call('HSET', txn_key, 'kind', 'repay', 'state', 'repaid', 'amount', amount,
    'hold', '0', 'posted', -amount, 'refunded', '0', 'auth', ARGV[3], 'created', ARGV[2],
    'rate', '0', 'beans', '0')
  redis.call('ZADD', index_key, ARGV[2], txn_key)
  return {'repaid', amount}
end)
