-- wrk script: POST instant orders, each with its own idempotency id.
-- Usage: wrk -t1 -c64 -d10s -s bench/orders.lua http://127.0.0.1:8080 -- RUN_ID KEY sms|email
-- The id is RUN_ID-THREAD-COUNTER, so threads and runs never repeat one, and
-- each order has a recipient of its own, as the per-recipient limit allows a
-- few messages to one number or address in 10 minutes.

local thread_count = 0

function setup(thread)
   thread:set("thread_number", thread_count)
   thread_count = thread_count + 1
end

local sms_body = '{"idempotencyId":"%s-%d-%d","sendersReference":"bench",'
   .. '"recipientSms":{"phoneNumber":"+47%d%07d","timeToLiveInSeconds":300,'
   .. '"smsSettings":{"sender":"Bench","body":"Your code is 482913."}}}'
local email_body = '{"idempotencyId":"%s-%d-%d","sendersReference":"bench",'
   .. '"recipientEmail":{"emailAddress":"user%d.%d@%s.example.com",'
   .. '"emailSettings":{"subject":"Your one-time code","body":"Your code is 482913."}}}'

local counter = 0
local run_id, template, path, headers

function init(args)
   run_id = args[1]
   local kind = args[3] or "sms"
   if kind == "email" then
      template, path = email_body, "/notifications/api/v1/future/orders/instant/email"
   else
      template, path = sms_body, "/notifications/api/v1/future/orders/instant/sms"
   end
   headers = {
      ["Authorization"] = "Bearer " .. args[2],
      ["Content-Type"] = "application/json",
   }
end

function request()
   counter = counter + 1
   local thread = thread_number or 0
   local body
   if template == sms_body then
      -- Norwegian mobile numbers start with 4 or 9.
      local first_digit = (thread % 2 == 0) and 4 or 9
      body = string.format(template, run_id, thread, counter, first_digit, counter % 10000000)
   else
      body = string.format(template, run_id, thread, counter, thread, counter, run_id)
   end
   return wrk.format("POST", path, headers, body)
end
