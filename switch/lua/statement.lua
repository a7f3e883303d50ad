-- Shared by the ledger's functions (switch/lua_library.py puts it after holds.lua): the
-- card's statement cycle, closed lazily. A card with a statement day D (1..28) has its
-- statement at the end of day D of every month (UTC): the cycle that ends then closes, and
-- the statement records the card's posted balance at that instant (purchases less credits,
-- with what was left unpaid before), its minimum payment and its due date. No timer does it:
-- the card's first ledger call at or after the instant (or a read, expire.lua) closes it, with
-- that call's clock, before it changes anything (docs/testing.md "The card's month").
-- Card fields: statement_day, cycle_end (ms: the current cycle's close), and of the last
-- statement stmt_at (its close, ms), stmt_balance, stmt_min, stmt_past_due, stmt_due (ms),
-- stmt_paid (repaid since it closed). switch/statement.py restates the calendar in Python.
local DAY_MS = 86400000
-- Due this many days after the statement: a purchase the day after a statement waits up to
-- a month for the next one and is due 20 days later, so about 50 days interest-free.
local DUE_DAYS = 20
local MIN_PAYMENT_PERCENT = 10  -- of the statement balance, plus whatever is past due

-- Days since 1970-01-01 of a civil date and back (H. Hinnant's algorithms, proleptic
-- Gregorian): Redis' Lua has no calendar of its own.
local function days_from_civil(y, m, d)
  if m <= 2 then y = y - 1 end
  local era = math.floor(y / 400)
  local yoe = y - era * 400
  local doy = math.floor((153 * ((m + 9) % 12) + 2) / 5) + d - 1
  local doe = yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100) + doy
  return era * 146097 + doe - 719468
end

local function year_month_of(days)
  local z = days + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524)
    - math.floor(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local m = mp < 10 and mp + 3 or mp - 9
  local y = yoe + era * 400
  if m <= 2 then y = y + 1 end
  return y, m
end

-- The first statement close (ms) of a card with statement day `day` after instant `t`.
local function next_close(t, day)
  local y, m = year_month_of(math.floor(t / DAY_MS))
  local close = (days_from_civil(y, m, day) + 1) * DAY_MS
  if close > t then return close end
  if m == 12 then y, m = y + 1, 1 else m = m + 1 end
  return (days_from_civil(y, m, day) + 1) * DAY_MS
end

local function statement_minimum(balance, past_due)
  if balance <= 0 then return 0 end
  local minimum = math.ceil(balance * MIN_PAYMENT_PERCENT / 100) + past_due
  if minimum > balance then return balance end
  return minimum
end

-- Closes the card's cycles that ended by `now` (ms): the latest becomes the last statement;
-- any before it (nobody used the card since) went unpaid, so their minimum is past due.
-- Bounded by the months the card sat unused (the clock never goes back). True when closed.
local function close_statements(key, now)
  local f = redis.call('HMGET', key, 'statement_day', 'cycle_end', 'posted', 'stmt_min',
    'stmt_paid')
  if not f[2] or now < tonumber(f[2]) then return false end
  local day, close, posted = tonumber(f[1]), tonumber(f[2]), tonumber(f[3])
  -- The previous statement's due date came before this close: its unpaid minimum is past due.
  local past_due = math.max(0, tonumber(f[4] or '0') - tonumber(f[5] or '0'))
  local minimum = statement_minimum(posted, past_due)
  local following = next_close(close, day)
  while following <= now do
    past_due = minimum
    minimum = statement_minimum(posted, past_due)
    close, following = following, next_close(following, day)
  end
  redis.call('HSET', key, 'stmt_at', close, 'stmt_balance', posted, 'stmt_min', minimum,
    'stmt_past_due', past_due, 'stmt_paid', '0', 'stmt_due', close + DUE_DAYS * DAY_MS,
    'cycle_end', following)
  return true
end

-- A card's statement day set (`switch card set --statement-day`): what closed under the old
-- day closes first; the current cycle then ends at the new day's next close.
-- KEYS[1] card hash; ARGV[1] the day (1..28), ARGV[2] now (ms). 0 when there is no card.
register('statement_day', function()
  local key, day, now = KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2])
  if redis.call('EXISTS', key) == 0 then return 0 end
  close_statements(key, now)
  redis.call('HSET', key, 'statement_day', day, 'cycle_end', next_close(now, day))
  return 1
end)
