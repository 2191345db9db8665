--[[
  Pins a checkpoint for a resume unless a delete has begun.
  KEYS[1] the checkpoint record
  ARGV[1] the operation id
  -> 1 pinned, 0 being deleted, -1 no such checkpoint
]]
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
if redis.call('HGET', KEYS[1], 'deleting') == '1' then return 0 end
redis.call('HSET', KEYS[1], 'pinnedBy', ARGV[1])
return 1
