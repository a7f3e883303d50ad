-- Expire the card's due holds, nothing else (`switch card show`).
-- KEYS[1] card hash, KEYS[2] its pending holds; ARGV[1] now (ms).
register('expire', function()
  expire_holds(KEYS[1], KEYS[2], ARGV[1])
  return 0
end)
