-- Balance inquiry: the card checks, then the open-to-buy; changes no balance.
local first = earlier_answer()
if first then return first end
local refusal = card_refusal(true)
if refusal then return decline(refusal[1], refusal[2]) end
if rule_code ~= '' then return decline(rule_code, rule_reason) end
return answer('00', 0, '', 0, auth_id)
