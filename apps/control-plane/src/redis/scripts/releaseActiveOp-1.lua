--[[
  Clears a VM's activeOp if this operation holds it.
  KEYS[1] the VM hash
  ARGV[1] the operation id
]]
if redis.call('HGET', KEYS[1], 'activeOp') == ARGV[1] then redis.call('HSET', KEYS[1], 'activeOp', '') end
return 0
