--[[
  The compare step of a compare-and-set over the hash KEYS[1]: its field `field` must hold one of
  the comma-separated `allowed` values, and each of the `n` (field, value) pairs in ARGV from index
  `first` on must match exactly.
  Returns: whether all hold; the field's current value (false when the hash or field is absent);
  the ARGV index just past the conditions (where the caller's field/value pairs to set begin).
]]
local function compareFields(field, allowed, n, first)
  local cur = redis.call('HGET', KEYS[1], field)
  if not cur then return false, false, first end
  local ok = false
  for p in string.gmatch(allowed, '[^,]+') do if p == cur then ok = true end end
  if not ok then return false, cur, first end
  local i = first
  for _ = 1, n do
    local v = redis.call('HGET', KEYS[1], ARGV[i])
    if v ~= ARGV[i + 1] then return false, cur, i end
    i = i + 2
  end
  return true, cur, i
end
