-- What a read of the card (`switch card show`) brings up to date first: the due holds
-- expire and a statement cycle that ended closes (statement.lua); nothing else changes.
-- KEYS[1] card hash, KEYS[2] its pending holds; ARGV[1] now (ms).
register('expire', function()
  expire_holds(KEYS[1], KEYS[2], ARGV[1])
  close_statements(KEYS[1], tonumber(ARGV[1]))
  return 0
end)
