// The example page: posthog-js (npm build, served by the app) plus otel-posthog.js.
// Every API call is made through traced(), so its request_id is known before the call and
// the frontend event carries it even when the call fails.
import posthog from '/vendor/posthog-js/module.full.js'
import { traced } from '/otel-posthog.js'

const config = JSON.parse(document.getElementById('config').textContent)
const apiBase = config.apiBase || window.location.origin
const apiHost = new URL(apiBase).hostname

posthog.init(config.posthogKey, {
  api_host: config.posthogHost,
  // posthog-js adds X-POSTHOG-SESSION-ID / -WINDOW-ID / -DISTINCT-ID to calls to these hostnames
  tracing_headers: [apiHost],
  person_profiles: 'identified_only',
  autocapture: false,
  // local capture server only: no feature flags, no lazy-loaded extensions, fast delivery
  advanced_disable_flags: true,
  disable_external_dependency_loading: true,
  request_queue_config: { flush_interval_ms: 250 },
  // posthog-js drops every event from headless browsers unless told otherwise (tests)
  opt_out_useragent_filter: true,
  ...config.posthogOptions,
})

const results = (window.exampleResults = [])
let token = null
const $ = (id) => document.getElementById(id)

function show(text) {
  $('status').textContent = text
  $('log').textContent += text + '\n'
}

function auth() {
  return token ? { Authorization: `Bearer ${token}` } : {}
}

// One API call: a fresh traceparent, the events captured before the call, failures captured too.
async function apiCall(action, path, init, events) {
  const call = traced({ posthog })
  for (const [event, props] of events) call.capture(event, props)
  const result = { action, requestId: call.requestId }
  try {
    const response = await call.fetch(apiBase + path, init)
    result.status = response.status
    result.responseRequestId = response.headers.get('x-request-id')
    result.body = await response.json().catch(() => null)
    if (!response.ok) {
      call.capture('api_call_failed', { action, status: response.status })
    }
  } catch (error) {
    // e.g. a cross-origin 500 answered outside CORSMiddleware: "TypeError: Failed to fetch"
    result.error = String(error)
    call.capture('api_call_failed', { action, error: String(error) })
  }
  results.push(result)
  show(`${action}: ${result.status ?? result.error} request_id=${result.requestId}`)
  return result
}

$('login').addEventListener('submit', async (e) => {
  e.preventDefault()
  const userId = $('user-id').value
  const result = await apiCall(
    'login',
    '/api/auth/login',
    {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ user_id: userId, email: `${userId}@example.com` }),
    },
    [['login_submitted', {}]],
  )
  if (result.body && result.body.token) {
    token = result.body.token
    posthog.identify(result.body.user_id)
    for (const id of ['start-chat', 'send-button', 'recommendations']) $(id).disabled = false
    show(`logged in as ${result.body.user_id}`)
  }
})

$('start-chat').addEventListener('click', () =>
  apiCall('start_chat', '/api/chat/messages', { headers: auth() }, [
    ['button_click', { button_name: 'Start Chat' }],
    ['chat_started', {}],
  ]),
)

$('send').addEventListener('submit', (e) => {
  e.preventDefault()
  const text = $('message').value
  apiCall(
    'send_message',
    '/api/chat/send',
    { method: 'POST', headers: { ...auth(), 'Content-Type': 'application/json' }, body: JSON.stringify({ text }) },
    [['chat_message_sent', { length: text.length }]],
  )
})

$('recommendations').addEventListener('click', () =>
  apiCall('recommendations', '/api/fail', { headers: auth() }, [
    ['button_click', { button_name: 'Load recommendations' }],
  ]),
)

window.posthog = posthog
show('ready')
