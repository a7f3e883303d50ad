-- A terminal's batch, for settlement (docs/channels/pos.md, "Batch settlement"). Every key
-- of one batch is under its hash tag {b:ACQUIRER:TERMINAL:BATCH} (protocols/ledger_layout.py
-- batch_keys): KEYS[1] the switch's entries, STAN -> "D|fen" (a debit: sale, completion)
-- or "C|fen" (a credit: refund); KEYS[2] the entries the terminal uploaded (0320), alike;
-- KEYS[3] the batch's state: its settlements, an overflow mark. These functions do not run
-- prelude.lua: their ARGV are their own, not the card calls' shared positions.

local function batch_expire(ttl_s)
  for _, key in ipairs(KEYS) do redis.call('EXPIRE', key, ttl_s) end
end

-- Sum of an entries hash: debit count, debit fen, credit count, credit fen.
local function batch_totals(key)
  local totals = {0, 0, 0, 0}
  local flat = redis.call('HGETALL', key)
  for i = 2, #flat, 2 do
    local side, fen = string.match(flat[i], '^(%u)|(%d+)$')
    local at = 1
    if side == 'C' then at = 3 end
    totals[at] = totals[at] + 1
    totals[at + 1] = totals[at + 1] + tonumber(fen)
  end
  return totals
end

-- An entry under STAN, unless the hash is full (then the batch is marked: it cannot balance).
local function batch_put(key, stan, entry, entries_max)
  if redis.call('HEXISTS', key, stan) == 0 and redis.call('HLEN', key) >= entries_max then
    redis.call('HSET', KEYS[3], 'overflow', 1)
    return 'overflow'
  end
  redis.call('HSET', key, stan, entry)
  return 'recorded'
end

-- An approved sale, completion or refund (ARGV: STAN, side D or C, fen, "", entries max,
-- ttl s), or reversal (ARGV: STAN, R, fen released, the original's STAN, ..., ...): the
-- original's entry keeps what remains, or goes when nothing does.
register('batch_record', function()
  local stan, side, fen = ARGV[1], ARGV[2], tonumber(ARGV[3])
  local entries_max, ttl_s = tonumber(ARGV[5]), tonumber(ARGV[6])
  local outcome
  if side == 'R' then
    local entry = redis.call('HGET', KEYS[1], ARGV[4])
    if not entry then return 'absent' end  -- a pre-authorization's hold: not in the totals
    local kind, had = string.match(entry, '^(%u)|(%d+)$')
    local left = tonumber(had) - fen
    if left > 0 then
      redis.call('HSET', KEYS[1], ARGV[4], kind .. '|' .. left)
    else
      redis.call('HDEL', KEYS[1], ARGV[4])
    end
    outcome = 'reversed'
  else
    outcome = batch_put(KEYS[1], stan, side .. '|' .. fen, entries_max)
  end
  batch_expire(ttl_s)
  return outcome
end)

-- One uploaded transaction (0320): ARGV STAN, side, fen, entries max, ttl s.
register('batch_upload', function()
  local outcome = batch_put(KEYS[2], ARGV[1], ARGV[2] .. '|' .. ARGV[3], tonumber(ARGV[4]))
  batch_expire(tonumber(ARGV[5]))
  return outcome
end)

-- A settlement (0500): ARGV the terminal's totals (debit count, debit fen, credit count,
-- credit fen), after upload (1: compare with the uploaded entries, else the switch's own),
-- now ms, ttl s. Returns {outcome, the compared totals, the switch's own totals} with
-- outcome balanced, unbalanced or overflow (entries were refused: never balanced).
register('batch_settle', function()
  local after_upload = ARGV[5] == '1'
  local own = batch_totals(KEYS[1])
  local compared = own
  if after_upload then compared = batch_totals(KEYS[2]) end
  local outcome = 'balanced'
  for i = 1, 4 do
    if compared[i] ~= tonumber(ARGV[i]) then outcome = 'unbalanced' end
  end
  if redis.call('HGET', KEYS[3], 'overflow') then outcome = 'overflow' end
  local totals = table.concat(compared, '|')
  redis.call('HSET', KEYS[3], 'outcome', outcome, 'after_upload', ARGV[5],
             'terminal', table.concat({ARGV[1], ARGV[2], ARGV[3], ARGV[4]}, '|'),
             'switch', table.concat(own, '|'), 'settled_ms', ARGV[6])
  batch_expire(tonumber(ARGV[7]))
  return {outcome, totals, table.concat(own, '|')}
end)
