-- x-pay token vault administration, atomically (switch/tokens.py).
-- KEYS[1] token hash {t:DPAN}. ARGV[1] 'provision', 'status' or 'key'.
-- provision: ARGV[2..] field/value pairs; returns 0 when the token number is taken.
-- status: ARGV[2] new status; returns the old status, or false when there is no token;
-- a deleted token stays deleted (wallets provision a new token instead).
-- key: the token's cryptogram key (hex), or false when there is no token. Read through the
-- vault's pipeline, in order with its token_use calls, so wallet messages of one connection
-- keep their order while a key is fetched (their ATCs must arrive rising).
register('token_admin', function()
  local token_key, action = KEYS[1], ARGV[1]
  if action == 'key' then return redis.call('HGET', token_key, 'key') end
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
