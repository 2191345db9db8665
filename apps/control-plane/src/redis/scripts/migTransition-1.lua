--[[
  A migration's phase transition with its indexes (by phase, pending, in flight, host load, progress).
  KEYS[1] the migration hash
  ARGV    prefix, id, allowedCSV, newPhase, pendingScore ('-' = not pending), inflightCSV, nConds,
          cond pairs..., pairs to set...
  -> {1, previous phase} when moved, {0, current phase or nil} when not
]]
--- @include "includes/compareFields"
local ok, cur, i = compareFields('phase', ARGV[3], tonumber(ARGV[7]), 8)
if not ok then return {0, cur} end
local P, id, new = ARGV[1], ARGV[2], ARGV[4]
local sets = {'phase', new}
for j = i, #ARGV do sets[#sets + 1] = ARGV[j] end
redis.call('HSET', KEYS[1], unpack(sets))
if new ~= cur then
  local created = redis.call('ZSCORE', P .. ':migs', id) or '0'
  redis.call('ZREM', P .. ':migs:phase:' .. cur, id)
  redis.call('ZADD', P .. ':migs:phase:' .. new, created, id)
end
if ARGV[5] == '-' then redis.call('ZREM', P .. ':migs:pending', id) else redis.call('ZADD', P .. ':migs:pending', ARGV[5], id) end
local inflight = false
for p in string.gmatch(ARGV[6], '[^,]+') do if p == new then inflight = true end end
local load = P .. ':migs:load'
local wasIn = redis.call('SISMEMBER', P .. ':migs:inflight', id) == 1
if inflight and not wasIn then
  redis.call('SADD', P .. ':migs:inflight', id)
  local src = redis.call('HGET', KEYS[1], 'source') or ''
  local dst = redis.call('HGET', KEYS[1], 'target') or ''
  local mem = tonumber(redis.call('HGET', KEYS[1], 'mem') or '0') or 0
  redis.call('HSET', KEYS[1], 'countedTarget', dst)
  redis.call('HINCRBY', load, 'cluster', 1)
  redis.call('HINCRBY', load, 'src:' .. src, 1)
  redis.call('HINCRBY', load, 'dst:' .. dst, 1)
  redis.call('HINCRBY', load, 'mem:' .. dst, mem)
elseif wasIn and not inflight then
  redis.call('SREM', P .. ':migs:inflight', id)
  local src = redis.call('HGET', KEYS[1], 'source') or ''
  local dst = redis.call('HGET', KEYS[1], 'countedTarget') or ''
  local mem = tonumber(redis.call('HGET', KEYS[1], 'mem') or '0') or 0
  redis.call('HINCRBY', load, 'cluster', -1)
  redis.call('HINCRBY', load, 'src:' .. src, -1)
  redis.call('HINCRBY', load, 'dst:' .. dst, -1)
  redis.call('HINCRBY', load, 'mem:' .. dst, -mem)
end
if inflight then
  local lp = tonumber(redis.call('HGET', KEYS[1], 'lastProgressAt') or '0') or 0
  redis.call('ZADD', P .. ':migs:progress', lp, id)
else
  redis.call('ZREM', P .. ':migs:progress', id)
end
return {1, cur}
