"""The job store's Lua scripts: each runs atomically inside Redis (see :class:`service.jobs.store.JobStore`).

Every script is a header (whether Redis may run it while over ``maxmemory``), the shared helpers, and its
own body; every key it touches is passed in ``KEYS``.
"""

# Script headers (Redis >= 7). Without flags a script is refused whole while Redis is over maxmemory; with
# allow-oom it runs, writes included. Every key a script touches is passed in KEYS.
DENY_OOM = "#!lua\n"
ALLOW_OOM = "#!lua flags=allow-oom\n"

# Store an outcome unless the job already has one: a job ends in exactly one final state even when a
# slow worker and the worker that claimed its entry both finish it. The image leaves Redis with the first
# outcome (or left it with an expired record): its bytes leave the queue's byte bound either way.
# KEYS: job, sizes, total. ARGV: job id, ttl, field, value, ...
FINISH = """
local status = redis.call('HGET', KEYS[1], 'status')
release(KEYS[2], KEYS[3], ARGV[1])
if status == false or status == 'succeeded' or status == 'failed' then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
redis.call('HDEL', KEYS[1], 'image')
redis.call('EXPIRE', KEYS[1], ARGV[2])
return 1
"""


# Lua helpers, prepended to the scripts that need them (see JobStore.__init__).
# ``group_info``: the group's XINFO GROUPS record as a table (nil when the stream or the group is missing).
# ``outstanding``: the entries still to be done, pending plus not yet delivered; acked entries kept behind
# a pending one do not count. It falls back to XLEN (an upper bound) when Redis cannot tell the lag, e.g.
# while tombstones left by an older version of this code remain.
# ``trim_acked``: removes the acked prefix of the stream. Pending entries were all delivered, so they sort
# before every undelivered one: the oldest pending entry, if any, bounds the trim; else the first entry
# after the last-delivered id; else every entry is acked and the stream is emptied. The stream has one
# consumer group (the workers'): a second group reading it would need its entries counted here too. An
# emptied stream means no job is left to do, so the byte count is reset with it (a safety net: each job's
# bytes are released when it ends).
# ``release``: a job's image left Redis; its bytes leave the byte bound (once: the sizes hash remembers).
# ``ensure_group``: the consumer group, created from id 0 when missing (Redis lost its data).
HELPERS = """
local function release(sizes, total, job_id)
  local size = redis.call('HGET', sizes, job_id)
  if not size then return end
  redis.call('HDEL', sizes, job_id)
  if redis.call('DECRBY', total, size) <= 0 then redis.call('DEL', total) end
end

local function group_info(stream, group)
  if redis.call('EXISTS', stream) == 0 then return nil end
  for _, flat in ipairs(redis.call('XINFO', 'GROUPS', stream)) do
    local info = {}
    for i = 1, #flat, 2 do info[flat[i]] = flat[i + 1] end
    if info['name'] == group then return info end
  end
  return nil
end

local function outstanding(stream, group)
  local info = group_info(stream, group)
  if info == nil or not info['lag'] then return redis.call('XLEN', stream) end
  return info['pending'] + info['lag']
end

local function trim_acked(stream, group, sizes, total)
  local info = group_info(stream, group)
  if info == nil then return 0 end
  local bound = redis.call('XPENDING', stream, group)[2]
  if not bound then
    local next_entry = redis.call('XRANGE', stream, '(' .. info['last-delivered-id'], '+', 'COUNT', 1)
    if #next_entry == 0 then
      redis.call('DEL', sizes, total)
      return redis.call('XTRIM', stream, 'MAXLEN', 0)
    end
    bound = next_entry[1][1]
  end
  return redis.call('XTRIM', stream, 'MINID', bound)
end

local function ensure_group(stream, group)
  if group_info(stream, group) == nil then
    redis.call('XGROUP', 'CREATE', stream, group, '0', 'MKSTREAM')
  end
end
"""

# Create a job atomically: the idempotency key, the hash, the stream entry and its bytes all happen or none
# does. A known idempotency key returns its job when the image is the same (its sha256), and is refused
# when it is not. Refused with -1 past the count bound, -2 past the byte bound.
# KEYS: job, stream, idempotency key ('' for none), sizes, total.
# ARGV: job id, ttl, count bound, group, byte bound, image bytes, image digest, field, value, ...
ENQUEUE = """
if KEYS[3] ~= '' then
  local existing = redis.call('GET', KEYS[3])
  if existing then
    local id, digest = string.match(existing, '^(%x+):(%x+)$')
    if id == nil then return {0, existing} end
    if digest ~= ARGV[7] then return {-3, id} end
    return {0, id}
  end
end
ensure_group(KEYS[2], ARGV[4])
if outstanding(KEYS[2], ARGV[4]) >= tonumber(ARGV[3]) then return {-1, ''} end
local size = tonumber(ARGV[6])
local queued = tonumber(redis.call('GET', KEYS[5]) or '0')
if queued + size > tonumber(ARGV[5]) then return {-2, tostring(queued)} end
redis.call('HSET', KEYS[1], unpack(ARGV, 8))
redis.call('EXPIRE', KEYS[1], ARGV[2])
redis.call('XADD', KEYS[2], '*', 'job_id', ARGV[1])
redis.call('HSET', KEYS[4], ARGV[1], size)
redis.call('INCRBY', KEYS[5], size)
if KEYS[3] ~= '' then redis.call('SET', KEYS[3], ARGV[1] .. ':' .. ARGV[7], 'EX', ARGV[2]) end
return {1, ARGV[1]}
"""

# Count an attempt and mark the job running, unless it expired (0: its image went with it) or already has
# an outcome. KEYS: job, sizes, total. ARGV: worker, time, job id.
START = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  release(KEYS[2], KEYS[3], ARGV[3])
  return 0
end
local status = redis.call('HGET', KEYS[1], 'status')
if status ~= 'succeeded' and status ~= 'failed' then
  redis.call('HINCRBY', KEYS[1], 'attempts', 1)
  redis.call('HSET', KEYS[1], 'status', 'running', 'worker', ARGV[1], 'started_at', ARGV[2], 'updated_at', ARGV[2])
end
return 1
"""

# Give a job back to the queue, only by the consumer that still owns its entry (a worker whose entry was
# claimed by another must not requeue a job the other may have finished), and never once it has an outcome.
# Returns 1 requeued, 0 not the owner (nothing changed); owned but not requeued, with the entry acked:
# 2 the job already has an outcome, 3 its record expired.
# KEYS: job, stream, sizes, total. ARGV: group, entry id, consumer, error, time, job id.
RETRY = """
local owned = redis.call('XPENDING', KEYS[2], ARGV[1], ARGV[2], ARGV[2], 1, ARGV[3])
if #owned == 0 then return 0 end
redis.call('XACK', KEYS[2], ARGV[1], ARGV[2])
local status = redis.call('HGET', KEYS[1], 'status')
local result = 2
if status == false then
  release(KEYS[3], KEYS[4], ARGV[6])
  result = 3
elseif status ~= 'succeeded' and status ~= 'failed' then
  redis.call('HSET', KEYS[1], 'status', 'queued', 'error', ARGV[4], 'updated_at', ARGV[5])
  redis.call('XADD', KEYS[2], '*', 'job_id', ARGV[6])
  result = 1
end
trim_acked(KEYS[2], ARGV[1], KEYS[3], KEYS[4])
return result
"""

# Ack an entry and trim what is now an acked prefix of the stream, atomically (a trim computed from a
# stale view could remove an entry delivered or added in between); for a job that ended failed, list it
# among the dead letters in the same step.
# KEYS: stream, sizes, total, dead letters. ARGV: group, entry id, job id to list as dead ('' for none), kept.
ACK = """
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
if ARGV[3] ~= '' then
  redis.call('LPUSH', KEYS[4], ARGV[3])
  redis.call('LTRIM', KEYS[4], 0, tonumber(ARGV[4]) - 1)
end
trim_acked(KEYS[1], ARGV[1], KEYS[2], KEYS[3])
return 1
"""
