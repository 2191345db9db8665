--[[
  Compare-and-set over a hash.
  KEYS[1] the hash
  ARGV    field, allowedCSV, nConds, cond pairs..., pairs to set...
  -> {1, previous value} when set, {0, current value or nil} when not
]]
--- @include "includes/compareFields"
local ok, cur, i = compareFields(ARGV[1], ARGV[2], tonumber(ARGV[3]), 4)
if not ok then return {0, cur} end
local sets = {}
for j = i, #ARGV do sets[#sets + 1] = ARGV[j] end
if #sets > 0 then redis.call('HSET', KEYS[1], unpack(sets)) end
return {1, cur}
