/**
 * otel-posthog.js: the browser half of otel-posthog. Dependency-free ES module.
 *
 * Each traced API call gets a fresh W3C `traceparent` (sampled flag set) whose trace id is
 * the backend's `request_id`. The id is known *before* the call is made, so a frontend
 * event can carry it even when the call then fails (network error, CORS error, a
 * cross-origin 500 the browser reports only as "Failed to fetch").
 *
 *   import { traced } from '/otel-posthog.js'
 *   const call = traced({ posthog })
 *   posthog.capture('button_click', { button_name: 'Start Chat', request_id: call.requestId })
 *   const res = await call.fetch('/api/chat/messages', { headers: { Authorization: `Bearer ${jwt}` } })
 *
 * Works alongside posthog-js: its `tracing_headers` option adds the X-POSTHOG-* session
 * headers and its `trace_propagation_targets` never overwrites the `traceparent` set here.
 * `call.fetch` calls the page's current `fetch` at call time, so posthog-js' patch applies.
 */

const TRACEPARENT = 'traceparent'

function randomHex(bytes) {
  const buf = new Uint8Array(bytes)
  globalThis.crypto.getRandomValues(buf)
  let hex = ''
  for (const b of buf) hex += (b < 16 ? '0' : '') + b.toString(16)
  return /^0+$/.test(hex) ? randomHex(bytes) : hex
}

/** A fresh sampled W3C trace context: `{ traceId, spanId, traceparent }`. */
export function newTraceparent() {
  const traceId = randomHex(16)
  const spanId = randomHex(8)
  return { traceId, spanId, traceparent: `00-${traceId}-${spanId}-01` }
}

/**
 * posthog-js' current ids: `{ distinctId, sessionId, windowId }` (undefined when unknown).
 * Reading does not extend or start a session.
 */
export function posthogIds(posthog) {
  const ids = { distinctId: undefined, sessionId: undefined, windowId: undefined }
  if (!posthog) return ids
  try {
    ids.distinctId = posthog.get_distinct_id() || undefined
    ids.sessionId = posthog.get_session_id() || undefined
    const manager = posthog.sessionManager
    if (manager && typeof manager.checkAndGetSessionAndWindowId === 'function') {
      ids.windowId = manager.checkAndGetSessionAndWindowId(true).windowId || undefined
    }
  } catch (_) {
    // posthog-js not initialised yet: no ids
  }
  return ids
}

/**
 * One traced API call. Returns `{ requestId, traceparent, headers(init), fetch(input, init),
 * capture(event, props) }`; `requestId` equals the backend event's `request_id`. The call's
 * `traceparent` replaces one already in `init` (else `requestId` would not match).
 *
 * Options: `posthog` (the posthog-js instance, for `capture` and the session headers),
 * `sessionHeaders` (default false: set X-POSTHOG-SESSION-ID / -WINDOW-ID / -DISTINCT-ID
 * from posthog-js yourself; leave false when posthog-js' `tracing_headers` lists the API host),
 * `fetch` (the fetch to call, default: the page's `fetch` at call time).
 */
export function traced(options = {}) {
  const { posthog, sessionHeaders = false } = options
  const trace = newTraceparent()

  function headers(init, input) {
    const base = init && init.headers !== undefined ? init.headers : input && input.headers
    const out = new Headers(base)
    out.set(TRACEPARENT, trace.traceparent) // replaces any other: requestId must match it
    out.delete('tracestate')
    if (sessionHeaders && posthog) {
      const ids = posthogIds(posthog)
      if (ids.sessionId) out.set('X-POSTHOG-SESSION-ID', ids.sessionId)
      if (ids.windowId) out.set('X-POSTHOG-WINDOW-ID', ids.windowId)
      if (ids.distinctId) out.set('X-POSTHOG-DISTINCT-ID', ids.distinctId)
    }
    return out
  }

  return {
    requestId: trace.traceId,
    traceparent: trace.traceparent,
    headers,
    /** `fetch` with this call's headers; a rejection carries `error.requestId`. */
    async fetch(input, init = {}) {
      const doFetch = options.fetch || globalThis.fetch
      try {
        return await doFetch(input, { ...init, headers: headers(init, input) })
      } catch (error) {
        try {
          error.requestId = trace.traceId
        } catch (_) {
          // a frozen error object: the caller still has call.requestId
        }
        throw error
      }
    },
    /** `posthog.capture(event, { ...props, request_id })`. */
    capture(event, props = {}) {
      if (posthog) posthog.capture(event, { ...props, request_id: trace.traceId })
    },
  }
}

/**
 * A `fetch` replacement that traces every call to `targets` (origins such as
 * `https://api.example.com`, or `'same-origin'`), calling `onRequest({ requestId, url })`
 * before each one; other URLs pass through untouched. It wraps the `fetch` current when it
 * is created (create it after `posthog.init()`), so it can be installed as `window.fetch`.
 */
export function tracedFetch(options = {}) {
  const targets = options.targets || ['same-origin']
  const baseFetch = options.fetch || globalThis.fetch.bind(globalThis)
  const here = globalThis.location ? globalThis.location.href : undefined
  const origins = targets.map((t) => (t === 'same-origin' ? new URL(here).origin : new URL(t).origin))
  return function fetchWithTrace(input, init) {
    const raw = typeof input === 'string' || input instanceof URL ? String(input) : input.url
    const url = new URL(raw, here)
    if (!origins.includes(url.origin)) return baseFetch(input, init)
    const call = traced({ ...options, fetch: baseFetch })
    if (options.onRequest) options.onRequest({ requestId: call.requestId, url: url.href })
    return call.fetch(input, init)
  }
}
