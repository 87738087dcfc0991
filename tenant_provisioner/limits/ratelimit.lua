#!lua name=tplimits
--[[
Per-tenant rate limit (GCRA), billing-period quota and breaker state in ONE call.

Contract (see docs/ratelimit-fcall.md): every key is passed in KEYS and shares the hash tag
{t:<tenant_id>}, so the call stays on one cluster slot; time comes only from the server (TIME),
never from the client; the billing period is the UTC calendar month of the server clock.

  FCALL tp_acquire 3 <gcra key> <quota key> <state key> <emission_us> <tolerance_us> <cost> <hard_limit>

  emission_us   microseconds per request (1e6 / rate_per_second)
  tolerance_us  emission_us * burst (an idle tenant may send `burst` requests at once)
  cost          requests this call consumes (0 = peek: read the state, change nothing)
  hard_limit    admitted requests allowed in the billing period
  (further arguments are ignored: the billing period is never the caller's to choose; a made-up
  period whose window contains now would otherwise get a fresh quota, counted where nobody reads)

Reply (all integers):
  1 code          0 ok, 1 rate_limited, 2 quota_exceeded, 3 suspended
  2 retry_ms      when refused: milliseconds until a retry can succeed (period end for quota)
  3 remaining     burst units left after this call
  4 rate_reset_ms milliseconds until the burst is fully replenished
  5 used          admitted requests this period (after this call)
  6 attempted     requests asked for this period, refused ones included (after this call)
  7 period_ms     milliseconds until the billing period ends
  8 period        billing period as yyyymm (e.g. 202611)
  9 period_len_s  length of the billing period in seconds
]]

local SLACK_MS = 35 * 86400 * 1000  -- counters stay readable for a month after their period

local function floor_div(a, b)
  return math.floor(a / b)
end

-- Howard Hinnant's civil-from-days / days-from-civil (proleptic Gregorian, UTC).
local function civil_from_days(z)
  z = z + 719468
  local era = floor_div(z, 146097)
  local doe = z - era * 146097
  local yoe = floor_div(doe - floor_div(doe, 1460) + floor_div(doe, 36524) - floor_div(doe, 146096), 365)
  local doy = doe - (365 * yoe + floor_div(yoe, 4) - floor_div(yoe, 100))
  local mp = floor_div(5 * doy + 2, 153)
  local m = (mp < 10) and (mp + 3) or (mp - 9)
  local y = yoe + era * 400
  if m <= 2 then y = y + 1 end
  return y, m
end

local function days_from_civil(y, m)
  if m <= 2 then y = y - 1 end
  local era = floor_div(y, 400)
  local yoe = y - era * 400
  local mm = (m > 2) and (m - 3) or (m + 9)
  local doy = floor_div(153 * mm + 2, 5)
  local doe = yoe * 365 + floor_div(yoe, 4) - floor_div(yoe, 100) + doy
  return era * 146097 + doe - 719468
end

-- The billing period containing `now_s`: id yyyymm, start and end in epoch seconds.
local function month_of(now_s)
  local y, m = civil_from_days(floor_div(now_s, 86400))
  local start_s = days_from_civil(y, m) * 86400
  local ny, nm = y, m + 1
  if nm == 13 then ny, nm = y + 1, 1 end
  return y * 100 + m, start_s, days_from_civil(ny, nm) * 86400
end

-- Integers are formatted explicitly: Lua would write large numbers as 1e+14.
local function int(x) return string.format('%.0f', x) end

-- A tenant's quota counters for `period`. When the server clock has entered a new period since
-- the last write they restart at 0, and the previous period's totals are kept (pp/pu/pa) so the
-- enforcer can close that period exactly.
local function read_quota(quota_key, period)
  local q = redis.call('HMGET', quota_key, 'p', 'u', 'a')
  local c = {current = tonumber(q[1]) == period, used = tonumber(q[2]) or 0, attempted = tonumber(q[3]) or 0}
  if not c.current then
    if q[1] then c.previous = {q[1], c.used, c.attempted} end
    c.used, c.attempted = 0, 0
  end
  return c
end

-- One write of the counters per counted call (the script is atomic, so the sums are exact).
local function save_quota(quota_key, c, period, end_s, admitted)
  local u, a = int(c.used), int(c.attempted)
  if c.current then
    if admitted then
      redis.call('HSET', quota_key, 'u', u, 'a', a)
    else
      redis.call('HSET', quota_key, 'a', a)
    end
    return
  end
  if c.previous then
    redis.call('HSET', quota_key, 'p', period, 'u', u, 'a', a,
               'pp', c.previous[1], 'pu', int(c.previous[2]), 'pa', int(c.previous[3]))
  else
    redis.call('HSET', quota_key, 'p', period, 'u', u, 'a', a)
  end
  redis.call('PEXPIREAT', quota_key, end_s * 1000 + SLACK_MS)  -- TTL set once per period
end

local function acquire(keys, args)
  local gcra_key, quota_key, state_key = keys[1], keys[2], keys[3]
  local emission = tonumber(args[1])
  local tolerance = tonumber(args[2])
  local cost = tonumber(args[3])
  local hard_limit = tonumber(args[4])
  if not (emission and tolerance and cost and hard_limit) or emission <= 0 or tolerance < 0
      or cost < 0 or cost ~= math.floor(cost) or hard_limit < 0 then
    return redis.error_reply('ERR tp_acquire: bad arguments')
  end

  local t = redis.call('TIME')
  local now_s = tonumber(t[1])
  local now = now_s * 1000000 + tonumber(t[2])
  local period, start_s, end_s = month_of(now_s)
  local period_ms = math.ceil((end_s * 1000000 - now) / 1000)
  local period_len = end_s - start_s

  local c = read_quota(quota_key, period)
  local used, attempted = c.used, c.attempted
  local function save(admitted)
    c.used, c.attempted = used, attempted
    save_quota(quota_key, c, period, end_s, admitted)
  end

  -- GCRA: the stored value is the theoretical arrival time (TAT) in microseconds.
  local tat = tonumber(redis.call('GET', gcra_key)) or now
  if tat < now then tat = now end
  local new_tat = tat + emission * cost
  local allow_at = new_tat - tolerance

  local st = redis.call('HMGET', state_key, 'state', 'period')
  local state, state_period = st[1], tonumber(st[2])

  local function reply(code, retry_ms, at)
    local remaining = math.floor((now + tolerance - at) / emission)
    if remaining < 0 then remaining = 0 end
    local reset_ms = math.ceil((at - now) / 1000)
    if reset_ms < 0 then reset_ms = 0 end
    return {code, retry_ms, remaining, reset_ms, used, attempted, period_ms, period, period_len}
  end

  if state == 'suspended' then
    return reply(3, 0, tat)  -- nothing counted: the tenant is out until an operator resumes it
  end
  if cost == 0 then  -- peek: would the next request be refused for quota?
    local code = ((state == 'hard_limit' and state_period == period) or used >= hard_limit) and 2 or 0
    return reply(code, code == 2 and period_ms or 0, tat)
  end

  attempted = attempted + cost
  if (state == 'hard_limit' and state_period == period) or used + cost > hard_limit then
    save(false)
    return reply(2, period_ms, tat)
  end
  if now < allow_at then
    save(false)
    return reply(1, math.ceil((allow_at - now) / 1000), tat)
  end
  -- Rounded up so fractional emission intervals can never drift towards over-admission.
  redis.call('SET', gcra_key, string.format('%.0f', math.ceil(new_tat)), 'PX',
             math.max(1, math.ceil((new_tat - now) / 1000)))
  used = used + cost
  save(true)
  return reply(0, 0, new_tat)
end

-- Units a client admitted while it could not reach Redis (degraded mode), metered when Redis
-- answers again: added to `used` and `attempted` of the current period with no quota check (the
-- requests were served), and charged to the rate as far as the burst goes (the TAT moves forward
-- by emission × units, at most to now + tolerance), so degraded and Redis admissions together stay
-- near rate × time + burst without refusing the tenant later for what it was already served.
--   FCALL tp_meter 2 <gcra key> <quota key> <units> <emission_us> <tolerance_us>  →  {used, attempted, period}
local function meter(keys, args)
  local gcra_key, quota_key = keys[1], keys[2]
  local units, emission, tolerance = tonumber(args[1]), tonumber(args[2]), tonumber(args[3])
  if not (units and emission and tolerance) or units < 1 or units ~= math.floor(units) or emission <= 0
      or tolerance < 0 then
    return redis.error_reply('ERR tp_meter: bad arguments')
  end
  local t = redis.call('TIME')
  local now_s = tonumber(t[1])
  local now = now_s * 1000000 + tonumber(t[2])
  local tat = tonumber(redis.call('GET', gcra_key)) or now
  if tat < now then tat = now end
  local new_tat = math.min(tat + emission * units, now + tolerance)
  if new_tat > tat then
    redis.call('SET', gcra_key, string.format('%.0f', math.ceil(new_tat)), 'PX',
               math.max(1, math.ceil((new_tat - now) / 1000)))
  end
  local period, _, end_s = month_of(now_s)
  local c = read_quota(quota_key, period)
  c.used, c.attempted = c.used + units, c.attempted + units
  save_quota(quota_key, c, period, end_s, true)
  return {c.used, c.attempted, period}
end

--@register
redis.register_function{function_name = 'tp_acquire', callback = acquire}
redis.register_function{function_name = 'tp_meter', callback = meter}
redis.register_function{function_name = 'tp_version', callback = function() return '2' end,
                        flags = {'no-writes'}}
