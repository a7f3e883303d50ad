-- x-pay token vault administration, atomically (switch/tokens.py).
-- KEYS[1] token hash {t:DPAN}. ARGV[1] 'provision' or 'status'.
-- provision: ARGV[2..] field/value pairs; returns 0 when the token number is taken.
-- status: ARGV[2] new status; returns the old status, or false when there is no token;
-- a deleted token stays deleted (wallets provision a new token instead).
register('token_admin', function()
  local token_key, action = KEYS[1], ARGV[1]
  if action == 'provision' then
    if redis.call('EXISTS', token_key) == 1 then return 0 end
    redis.call('HSET', token_key, unpack(ARGV, 2))
    return 1
  end
  local old = redis.call('HGET', token_key, 'status')
  if not old then return false end
  if old ~= 'deleted' then redis.call('HSET', token_key, 'status', ARGV[2]) end
  return old
end)
