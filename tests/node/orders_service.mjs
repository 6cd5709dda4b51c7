// A Node.js HTTP service traced with the OpenTelemetry JS SDK, exporting OTLP/HTTP.
//
// Usage: node orders_service.mjs <otlp traces url> <json|proto> <service.name>
// Prints {"port": N} once listening on 127.0.0.1. Each request makes one SERVER span with
// stable semantic-convention attributes, plus enduser.id / session.id from the
// x-user-id / x-session-id headers. SIGTERM flushes the exporter and exits.
import http from 'node:http';
import { SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { BatchSpanProcessor, NodeTracerProvider } from '@opentelemetry/sdk-trace-node';
import {
  ATTR_HTTP_REQUEST_METHOD,
  ATTR_HTTP_RESPONSE_STATUS_CODE,
  ATTR_HTTP_ROUTE,
  ATTR_SERVICE_NAME,
  ATTR_URL_PATH,
  ATTR_URL_SCHEME,
} from '@opentelemetry/semantic-conventions';
import { OTLPTraceExporter as JsonExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { OTLPTraceExporter as ProtoExporter } from '@opentelemetry/exporter-trace-otlp-proto';

const [url, protocol, serviceName] = process.argv.slice(2);
const Exporter = protocol === 'proto' ? ProtoExporter : JsonExporter;
const exporter = new Exporter({ url, headers: JSON.parse(process.env.OTLP_HEADERS || '{}') });
const provider = new NodeTracerProvider({
  resource: resourceFromAttributes({
    [ATTR_SERVICE_NAME]: serviceName,
    'deployment.environment.name': 'test',
  }),
  spanProcessors: [new BatchSpanProcessor(exporter, { scheduledDelayMillis: 100 })],
});
provider.register();
const tracer = trace.getTracer('orders-service');

// The app's one route; the template is written like the Python service's.
const ROUTE = /^\/api\/orders\/([^/]+)$/;

const server = http.createServer((req, res) => {
  const path = req.url.split('?')[0];
  const match = ROUTE.exec(path);
  const attributes = {
    [ATTR_HTTP_REQUEST_METHOD]: req.method,
    [ATTR_URL_PATH]: path,
    [ATTR_URL_SCHEME]: 'http',
  };
  if (match) attributes[ATTR_HTTP_ROUTE] = '/api/orders/{order_id}';
  const name = match ? `${req.method} /api/orders/{order_id}` : req.method;
  tracer.startActiveSpan(name, { kind: SpanKind.SERVER, attributes }, (span) => {
    if (req.headers['x-user-id']) span.setAttribute('enduser.id', req.headers['x-user-id']);
    if (req.headers['x-session-id']) span.setAttribute('session.id', req.headers['x-session-id']);
    let status = 404;
    if (match) status = match[1] === 'down' ? 503 : 200;
    span.setAttribute(ATTR_HTTP_RESPONSE_STATUS_CODE, status);
    if (status >= 500) span.setStatus({ code: SpanStatusCode.ERROR });
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ order: match ? match[1] : null }));
    span.end();
  });
});

server.listen(0, '127.0.0.1', () => {
  console.log(JSON.stringify({ port: server.address().port }));
});

process.on('SIGTERM', async () => {
  server.close();
  await provider.shutdown();
  process.exit(0);
});
