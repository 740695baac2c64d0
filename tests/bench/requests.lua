-- wrk script: replays one request whose method, path, headers and body come from a file
-- (REQUEST_FILE: first line "METHOD PATH", then "Name: value" lines, a blank line, the body),
-- or PUTs /apis/sts/token with bearer tokens from TOKENS_FILE (one per line, cycled; each
-- thread starts at its own offset so concurrent connections present different tokens, plus
-- TOKEN_OFFSET if set).
-- Answers other than EXPECT_STATUS (default 2xx) are counted and reported as errors.
local tokens, req_method, req_path, req_headers, req_body = {}, "GET", "/", {}, nil
local expect = tonumber(os.getenv("EXPECT_STATUS") or "0")
local threads, counter = {}, 1

function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

function init(args)
  req_path = wrk.path
  local tf = os.getenv("TOKENS_FILE")
  if tf then
    for line in io.lines(tf) do if #line > 0 then tokens[#tokens + 1] = line end end
    req_method, req_path = "PUT", os.getenv("TOKEN_PATH") or "/apis/sts/token"
    next_token = (math.floor((#tokens / 2) * (id - 1)) + tonumber(os.getenv("TOKEN_OFFSET") or "0")) % #tokens
  end
  local rf = os.getenv("REQUEST_FILE")
  if rf then
    local f = assert(io.open(rf, "rb"))
    local content = f:read("*a")
    f:close()
    local head, body = content:match("^(.-)\r?\n\r?\n(.*)$")
    local first = true
    for line in head:gmatch("[^\r\n]+") do
      if first then
        req_method, req_path = line:match("^(%S+)%s+(%S+)")
        first = false
      else
        local k, v = line:match("^([^:]+):%s*(.*)$")
        req_headers[k] = v
      end
    end
    req_body = body
  end
  bad = 0
end

function request()
  if #tokens > 0 then
    next_token = next_token % #tokens + 1
    return wrk.format(req_method, req_path, { ["Authorization"] = "Bearer " .. tokens[next_token] }, "")
  end
  return wrk.format(req_method, req_path, req_headers, req_body)
end

function response(status, headers, body)
  if (expect > 0 and status ~= expect) or (expect == 0 and (status < 200 or status > 299)) then
    bad = bad + 1
  end
end

function done(summary, latency, requests)
  local total = 0
  for _, t in ipairs(threads) do total = total + (t:get("bad") or 0) end
  io.write(string.format("BAD_STATUS %d\n", total))
end
