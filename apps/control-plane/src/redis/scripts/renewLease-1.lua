--[[
  Extends a lease if we still hold it.
  KEYS[1] the lease; ARGV[1] our owner token; ARGV[2] the TTL in ms
  -> 1 renewed, 0 not ours (expired or taken)
]]
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) else return 0 end
