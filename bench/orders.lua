-- wrk script: POST instant orders, each with its own idempotency id.
-- Usage: wrk -t1 -c64 -d10s -s bench/orders.lua http://127.0.0.1:8080 -- RUN_ID KEY sms|email
-- The id is RUN_ID-THREAD-COUNTER, so threads and runs never repeat one.

local thread_count = 0

function setup(thread)
   thread:set("thread_number", thread_count)
   thread_count = thread_count + 1
end

local sms_body = '{"idempotencyId":"%s-%d-%d","sendersReference":"bench",'
   .. '"recipientSms":{"phoneNumber":"+4799999999","timeToLiveInSeconds":300,'
   .. '"smsSettings":{"sender":"Bench","body":"Your code is 482913."}}}'
local email_body = '{"idempotencyId":"%s-%d-%d","sendersReference":"bench",'
   .. '"recipientEmail":{"emailAddress":"ola.nordmann@example.com",'
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
   local body = string.format(template, run_id, thread_number or 0, counter)
   return wrk.format("POST", path, headers, body)
end
