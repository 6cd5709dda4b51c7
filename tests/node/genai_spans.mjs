// A Node.js request that calls a model, as the OpenTelemetry JS SDK exports it: one SERVER
// span (with enduser.id / session.id), a GenAI chat CLIENT span under it (GenAI semantic
// conventions, content captured) and the model's HTTP CLIENT span under that (a 429).
//
// Usage: node genai_spans.mjs <otlp traces url> <json|proto>
// Exports the spans in one batch, prints {"trace_id": "..."} and exits.
import { SpanKind, SpanStatusCode, context, trace } from '@opentelemetry/api';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { BatchSpanProcessor, NodeTracerProvider } from '@opentelemetry/sdk-trace-node';
import { OTLPTraceExporter as JsonExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { OTLPTraceExporter as ProtoExporter } from '@opentelemetry/exporter-trace-otlp-proto';

const [url, protocol] = process.argv.slice(2);
const Exporter = protocol === 'proto' ? ProtoExporter : JsonExporter;
const provider = new NodeTracerProvider({
  resource: resourceFromAttributes({
    'service.name': 'node-chat',
    'deployment.environment.name': 'test',
  }),
  spanProcessors: [new BatchSpanProcessor(new Exporter({ url }), { scheduledDelayMillis: 60000 })],
});
provider.register();
const tracer = trace.getTracer('node-chat');

const request = tracer.startSpan('POST /api/chat', {
  kind: SpanKind.SERVER,
  attributes: {
    'http.request.method': 'POST',
    'http.route': '/api/chat',
    'url.path': '/api/chat',
    'url.scheme': 'http',
    'enduser.id': 'user-123',
    'session.id': '0190f3a2-7b1c-7d4e-8f00-123456789abc',
  },
});
const inRequest = trace.setSpan(context.active(), request);
const chat = tracer.startSpan(
  'chat gpt-node',
  {
    kind: SpanKind.CLIENT,
    attributes: {
      'gen_ai.operation.name': 'chat',
      'gen_ai.provider.name': 'openai',
      'gen_ai.request.model': 'gpt-node',
      'gen_ai.input.messages': JSON.stringify([
        { role: 'user', parts: [{ type: 'text', content: 'hello from node' }] },
      ]),
    },
  },
  inRequest,
);
const http = tracer.startSpan(
  'POST',
  {
    kind: SpanKind.CLIENT,
    attributes: {
      'http.request.method': 'POST',
      'url.full': 'https://models.example.com/v1/chat/completions',
      'http.response.status_code': 429,
    },
  },
  trace.setSpan(inRequest, chat),
);
http.setStatus({ code: SpanStatusCode.ERROR });
http.end();
chat.setStatus({ code: SpanStatusCode.ERROR, message: '429 Rate limit reached' });
chat.end();
request.setAttribute('http.response.status_code', 503);
request.setStatus({ code: SpanStatusCode.ERROR });
request.end();
await provider.shutdown();
console.log(JSON.stringify({ trace_id: request.spanContext().traceId }));
