-- Completion of a pre-authorization: post the amount, release the hold. The amount may pass
-- the hold by the policy's tolerance (ARGV[16], percent) when the open-to-buy covers it.
register('capture', function()
  if begin() then return TOO_LATE end
  local ended = opening(false)
  if ended then return ended end
  local kind, state, hold, auth, rate, beans_before = unpack(redis.call('HMGET', txn_key,
    'kind', 'state', 'hold', 'auth', 'rate', 'beans'))
  if not kind or state == 'voided' then return decline('25', 'original_not_found') end
  if kind ~= 'auth' then return decline('12', 'original_not_an_authorization') end
  if state ~= 'pending' then return decline('12', 'original_already_' .. state) end
  hold = tonumber(hold)
  -- Integer arithmetic: amount <= hold * (1 + tolerance / 100).
  if amount * 100 > hold * (100 + tonumber(capture_tolerance_pct)) then
    return decline('13', 'capture_exceeds_hold')
  end
  if amount - hold > open_to_buy() then return decline('51', 'insufficient_open_to_buy') end

  move('held', -hold)
  move('posted', amount)
  txn_set('state', 'captured', 'hold', '0', 'posted', amount)
  redis.call('ZREM', holds_key, txn_key)
  local beans = rebalance_beans(tonumber(beans_before), amount, tonumber(rate))
  return answer('00', amount, '', beans, auth)
end)
