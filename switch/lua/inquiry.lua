-- Balance inquiry: the card checks, then the open-to-buy; changes no balance.
-- An inquiry naming an original (ARGV[14] = 1; WeChat orderquery) answers that transaction:
-- approved = its amount, and its state (pending, captured, refunded, reversed,
-- expired) as an 8th element (pending, captured, refunded, reversed,
-- expired). Such an answer is not remembered: the state may change, a later query must see it.
-- Its 9th element lists the original's refunds (refund.lua; '' for none).
register('inquiry', function()
  if begin() then return TOO_LATE end
  if names_original then
    local first = earlier_answer()
    if first then return first end
    if not load_current_card() then return decline('14', 'card_unknown') end
    local refusal = user_refusal()
    if refusal then
      card_refused = true
      return decline(refusal[1], refusal[2])
    end
    if rule_code ~= '' then return decline(rule_code, rule_reason) end
    local kind, state, total, refunded, auth, refunds = unpack(redis.call('HMGET', txn_key,
      'kind', 'state', 'amount', 'refunded', 'auth', 'refunds'))
    if not kind then return {'25', 0, open_to_buy(), '', 'original_not_found', 0, 0} end
    if state == 'captured' and tonumber(refunded) > 0 then state = 'refunded' end
    return {'00', tonumber(total), open_to_buy(), auth, '', 0, 0, state, refunds or ''}
  end
  local ended = opening(true)
  if ended then return ended end
  return answer('00', 0, '', 0, auth_id)
end)
