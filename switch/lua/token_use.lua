-- x-pay: the token checks of one wallet message, atomically (switch/tokens.py).
-- KEYS[1] token hash {t:DPAN}; KEYS[2] the verdict remembered for this idempotency key.
-- ARGV[1] current month YYMM, ARGV[2] request fingerprint, ARGV[3] ATC (9F36; -1: the
-- message carries no cryptogram), ARGV[4] cryptogram verdict (1 right, 0 wrong),
-- ARGV[5] verdict record lifetime (s).
-- Returns {code, reason, pan, repeat}: code '' means "decide on card pan".
register('token_use', function()
  local token_key, verdict_key = KEYS[1], KEYS[2]
  local this_month, fingerprint, atc = ARGV[1], ARGV[2], tonumber(ARGV[3])
  local cryptogram_ok, verdict_ttl_s = ARGV[4] == '1', tonumber(ARGV[5])

  -- A repeat gets the first verdict before any check: its ATC is no longer above the last
  -- one seen, yet it is the same message, not a replay.
  local first = redis.call('HMGET', verdict_key, 'fp', 'code', 'reason', 'pan')
  if first[1] then
    if first[1] ~= fingerprint then return {'94', 'duplicate_key_mismatch', '', 1} end
    return {first[2], first[3], first[4], 1}
  end

  local pan, status, expiry, last_atc = unpack(redis.call('HMGET', token_key,
    'pan', 'status', 'expiry', 'atc'))
  if not pan then return {'14', 'token_unknown', '', 0} end
  -- Captures, reversals and refunds come from the acquirer: the token only names the card,
  -- whatever its status, so money held or posted through it can always be released.
  if atc < 0 then return {'', '', pan, 0} end

  local function remember(code, reason)
    redis.call('HSET', verdict_key, 'fp', fingerprint, 'code', code, 'reason', reason,
      'pan', pan)
    redis.call('EXPIRE', verdict_key, verdict_ttl_s)
    return {code, reason, pan, 0}
  end

  if status == 'deleted' then return remember('14', 'token_deleted') end
  if status == 'suspended' then return remember('62', 'token_suspended') end
  if status ~= 'active' then return remember('62', 'token_status_' .. tostring(status)) end
  if tonumber(expiry) < tonumber(this_month) then return remember('54', 'token_expired') end
  -- Security declines change nothing: no verdict kept, the ATC does not move.
  if not cryptogram_ok then return {'34', 'cryptogram_mismatch', '', 0} end
  if atc <= tonumber(last_atc) then return {'63', 'atc_replay', '', 0} end
  redis.call('HSET', token_key, 'atc', atc)
  return remember('', '')
end)
