-- Reversal: releases (part of) a pending hold, or voids (part of) a sale not yet refunded.
-- amount 0 means the whole remaining amount.
register('reverse', function()
  if begin() then return TOO_LATE end
  local ended = opening(false)
  if ended then return ended end
  local kind, state, hold, posted, refunded, auth, rate, beans_before = unpack(redis.call(
    'HMGET', txn_key, 'kind', 'state', 'hold', 'posted', 'refunded', 'auth', 'rate', 'beans'))
  if not kind or state == 'voided' then return decline('25', 'original_not_found') end
  hold, posted, refunded = tonumber(hold), tonumber(posted), tonumber(refunded)

  local remaining, field
  if kind == 'auth' and state == 'pending' then
    remaining, field = hold, 'hold'
  elseif kind == 'sale' and state == 'captured' and refunded == 0 then
    remaining, field = posted, 'posted'
  elseif state == 'captured' then
    return decline('12', 'original_already_captured_or_refunded')
  else
    return decline('12', 'original_already_' .. state)
  end
  local release = amount
  if release == 0 then release = remaining end
  if release > remaining then return decline('13', 'reversal_exceeds_original') end

  local left = remaining - release
  move(field == 'hold' and 'held' or 'posted', -release)
  if left == 0 then
    txn_set(field, left, 'state', 'reversed')
    redis.call('ZREM', holds_key, txn_key)
  else
    txn_set(field, left)
  end
  local beans = 0
  if field == 'posted' then beans = rebalance_beans(tonumber(beans_before), left, tonumber(rate)) end
  return answer('00', release, '', beans, auth)
end)
