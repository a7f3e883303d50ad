-- A fault rule's uses (switch/faults.py `times`): at most N across every worker, and one per
-- request, kept only when the request was answered by the rule. The uses live beside the rule
-- set, in its hash tag: {faults}:counts holds ID:used; {faults}:takers:ID maps each request
-- (idempotency key) that took a use to the token of the attempt that took it.

-- KEYS[1] the counts, KEYS[2] the rule's takers. ARGV[1] the rule's id, ARGV[2] its times,
-- ARGV[3] the request's idempotency key, ARGV[4] the attempt's token, ARGV[5] the takers'
-- lifetime (s, the answers'), ARGV[6] the call's fence (prelude.lua past_fence: a take Redis
-- runs after its request was answered 91 would use up a use no answer had).
-- Returns 'taken'; 'again' (a repeat: the request took one before, and its first answer is
-- what it gets); 'spent' (N taken); 'late' (past the fence: nothing written).
register('fault_take', function()
  if past_fence(ARGV[6]) then return 'late' end
  if redis.call('HEXISTS', KEYS[2], ARGV[3]) == 1 then return 'again' end
  local field = ARGV[1] .. ':used'
  if tonumber(redis.call('HGET', KEYS[1], field) or '0') >= tonumber(ARGV[2]) then
    return 'spent'
  end
  redis.call('HINCRBY', KEYS[1], field, 1)
  redis.call('HSET', KEYS[2], ARGV[3], ARGV[4])
  redis.call('EXPIRE', KEYS[2], ARGV[5])
  return 'taken'
end)

-- The use an attempt took, given back: the request was not answered by the rule (its first
-- answer came back, the card's call was refused or voided). Only the attempt that took it
-- gives it back, once, and never below zero: counts reset since the take (switch/faults.py:
-- a rule cleared, its id used again) are not made negative, or a rule would allow N+1 uses.
-- KEYS as fault_take's; ARGV[1] the rule's id, ARGV[2] the idempotency key, ARGV[3] the
-- attempt's token. Returns 1 when given back, 0 when there was none.
register('fault_give_back', function()
  if redis.call('HGET', KEYS[2], ARGV[2]) ~= ARGV[3] then return 0 end
  redis.call('HDEL', KEYS[2], ARGV[2])
  local field = ARGV[1] .. ':used'
  if tonumber(redis.call('HGET', KEYS[1], field) or '0') <= 0 then return 0 end
  redis.call('HINCRBY', KEYS[1], field, -1)
  return 1
end)
