-- A request's claim on its id in the scope its channel defines (protocols/ledger_layout.py
-- claim_key): made before the card's own call, in a call of its own (the claim is in its own
-- cluster slot, the card's keys in the card's). The first request under an id names its card;
-- a later one under the same id on the same card goes on to the card's call (a repeat gets
-- the first answer there, other content 94), on another card it is 94 and goes no further.
-- A claim whose card call never came (the switch stopped between the two, Redis failed in
-- between) blocks nothing honest: the repeat names the same card and proceeds.
-- KEYS[1] the claim; ARGV[1] the card's number; ARGV[2] its lifetime (s): the answers'.
-- Returns 1 when the id is this card's, 0 when another card holds it.
register('claim', function()
  local holder = redis.call('SET', KEYS[1], ARGV[1], 'NX', 'GET', 'EX', ARGV[2])
  if not holder or holder == ARGV[1] then return 1 end
  return 0
end)
