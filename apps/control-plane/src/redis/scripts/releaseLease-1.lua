--[[
  Gives a lease up if we still hold it.
  KEYS[1] the lease; ARGV[1] our owner token
  -> 1 released, 0 not ours
]]
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end
