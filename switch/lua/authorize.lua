-- Authorization (places a hold) or sale (posts at once). ARGV[13]: 'auth' or 'sale'.
local kind = ARGV[13]
local first = earlier_answer()
if first then return first end
local refusal = card_refusal(true)
if refusal then return decline(refusal[1], refusal[2]) end
if rule_code ~= '' then return decline(rule_code, rule_reason) end
if redis.call('EXISTS', txn_key) == 1 then return decline('94', 'duplicate_reference') end

local otb = open_to_buy()
local approved, code = amount, '00'
if amount > otb then
  if not partial_ok or otb == 0 then return decline('51', 'insufficient_open_to_buy') end
  approved, code = otb, '10'
end

local beans = 0
if kind == 'auth' then
  redis.call('HINCRBY', card_key, 'held', approved)
  redis.call('HSET', txn_key, 'kind', kind, 'state', 'pending', 'amount', approved,
    'hold', approved, 'posted', 0, 'refunded', 0, 'auth', auth_id, 'created', now_ms,
    'rate', beans_per_yuan, 'beans', 0)
else
  redis.call('HINCRBY', card_key, 'posted', approved)
  redis.call('HSET', txn_key, 'kind', kind, 'state', 'captured', 'amount', approved,
    'hold', 0, 'posted', approved, 'refunded', 0, 'auth', auth_id, 'created', now_ms,
    'rate', beans_per_yuan, 'beans', 0)
  beans = rebalance_beans(0, approved, beans_per_yuan)
end
redis.call('ZADD', index_key, now_ms, txn_key)
if open_to_buy() ~= otb - approved then error('open-to-buy did not drop by the approval') end
return answer(code, approved, '', beans, auth_id)
