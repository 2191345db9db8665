--[[
  Marks a checkpoint as being deleted if no resume pinned it since the caller looked.
  KEYS[1] the checkpoint record
  ARGV[1] the pinnedBy the caller saw ('' for none)
  -> 1 marked, 0 pinned meanwhile or already being deleted, -1 no such checkpoint
]]
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
if redis.call('HGET', KEYS[1], 'deleting') == '1' then return 0 end
if (redis.call('HGET', KEYS[1], 'pinnedBy') or '') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'deleting', '1')
return 1
