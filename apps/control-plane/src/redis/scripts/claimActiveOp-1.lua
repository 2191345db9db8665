--[[
  Sets a VM's activeOp unless another operation holds it.
  KEYS[1] the VM hash
  ARGV[1] the operation id
  -> 1 claimed (it was free or already ours), 0 held by another
]]
local c = redis.call('HGET', KEYS[1], 'activeOp')
if c == false or c == '' or c == ARGV[1] then
  redis.call('HSET', KEYS[1], 'activeOp', ARGV[1])
  return 1
end
return 0
