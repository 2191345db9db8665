--[[
  Ends a checkpoint's "being deleted" mark (the delete failed), if the record still exists.
  KEYS[1] the checkpoint record
]]
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('HSET', KEYS[1], 'deleting', '') end
return 0
