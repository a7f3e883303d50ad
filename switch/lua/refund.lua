-- Refund against a captured original: credit back at most what it posted, less refunds.
-- An instant (JD lightning) refund restores open-to-buy at once; any other waits in
-- pending_credit until the card is settled. The refund is listed on its original
-- (`refunds`, JSON [[refund id, amount, time ms], ...]: WeChat refundquery reads it); a void
-- of the refund restores the list with the amount.
register('refund', function()
  if begin() then return TOO_LATE end
  local ended = opening(false)
  if ended then return ended end
  local kind, state, posted, refunded, rate, beans_before, refunds = unpack(redis.call('HMGET',
    txn_key, 'kind', 'state', 'posted', 'refunded', 'rate', 'beans', 'refunds'))
  if not kind or state == 'voided' then return decline('25', 'original_not_found') end
  if state ~= 'captured' then return decline('12', 'original_not_captured') end
  posted, refunded = tonumber(posted), tonumber(refunded)
  if amount > posted - refunded then return decline('13', 'refund_exceeds_original') end

  local listed = {}
  if refunds and refunds ~= '' then listed = cjson.decode(refunds) end
  -- the refund's own id: its idempotency key, after the card's key and ':i:'
  listed[#listed + 1] = {string.sub(idem_key, #card_key + 4), amount, tonumber(now_ms)}
  txn_set('refunded', refunded + amount, 'refunds', cjson.encode(listed))
  if instant then
    move('posted', -amount)
  else
    card_add('pending_credit', amount)
    card_expect('clearings')  -- a void cannot take back a credit cleared since
  end
  local beans = rebalance_beans(tonumber(beans_before), posted - refunded - amount, tonumber(rate))
  return answer('00', amount, '', beans, auth_id)
end)
