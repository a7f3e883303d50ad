-- Completion of a pre-authorization: post up to the hold, release the remainder.
local first = earlier_answer()
if first then return first end
local refusal = card_refusal(false)
if refusal then return decline(refusal[1], refusal[2]) end
if rule_code ~= '' then return decline(rule_code, rule_reason) end
local kind, state, hold, auth, rate, beans_before = unpack(redis.call('HMGET', txn_key,
  'kind', 'state', 'hold', 'auth', 'rate', 'beans'))
if not kind then return decline('25', 'original_not_found') end
if kind ~= 'auth' then return decline('12', 'original_not_an_authorization') end
if state ~= 'pending' then return decline('12', 'original_already_' .. state) end
hold = tonumber(hold)
if amount > hold then return decline('13', 'capture_exceeds_hold') end

redis.call('HINCRBY', card_key, 'held', -hold)
redis.call('HINCRBY', card_key, 'posted', amount)
redis.call('HSET', txn_key, 'state', 'captured', 'hold', 0, 'posted', amount)
local beans = rebalance_beans(tonumber(beans_before), amount, tonumber(rate))
return answer('00', amount, '', beans, auth)
