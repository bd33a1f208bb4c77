// The visits example as a JavaScript component (ComponentizeJS): it counts its visits in the
// function's key-value store (wasi:keyvalue), greets with a config value (wasi:config), logs
// each visit (wasi:logging) and publishes on request (wafer:pubsub), like
// examples/visits-component-rust.
//
// - config `greeting` (default `hello`);
// - kv counter `visits`, incremented atomically (an error is reported as `kv error: MSG` and
//   the visit number is 0);
// - log line `visit N`;
// - output `GREETING, visit N`, then one line for each of the query parameters
//   `publish=TOPIC` (publishes the request body), `get=KEY` (the value of a key, or
//   `(none)`) and `secret=NAME` (the length of a config value or secret, never the value).
//
// Subscribed to topics, it takes each message through its wafer:pubsub/subscriber export: it
// counts it in `messages`, keeps it in `last-message` and logs `message on TOPIC`; a message
// on the topic `fail` is refused.

import { open } from 'wasi:keyvalue/store@0.2.0-draft';
import { increment } from 'wasi:keyvalue/atomics@0.2.0-draft';
import { get as configGet } from 'wasi:config/store@0.2.0-draft';
import { log } from 'wasi:logging/logging@0.1.0-draft';
import { publish } from 'wafer:pubsub/publisher@0.1.0';

const text = new TextEncoder();
const decoded = new TextDecoder();

// An error a capability raised (a ComponentError carrying the WIT error value).
function describe(e) {
  const value = e && e.payload !== undefined ? e.payload : e;
  if (typeof value === 'string') return value;
  if (value && value.val !== undefined) return String(value.val);
  if (value && value.tag) return value.tag;
  return String(value);
}

function visit(params, body) {
  let greeting = 'hello';
  try {
    greeting = configGet('greeting') ?? greeting;
  } catch (e) {}
  const lines = [];
  let bucket;
  let number = 0;
  try {
    bucket = open('default');
    number = Number(increment(bucket, 'visits', 1n));
  } catch (e) {
    lines.push(`kv error: ${describe(e)}`);
  }
  log('info', '', `visit ${number}`);
  const out = [`${greeting}, visit ${number}`, ...lines];
  if (params.has('publish')) {
    try {
      publish(params.get('publish'), body);
      out.push('published');
    } catch (e) {
      out.push(`publish error: ${describe(e)}`);
    }
  }
  if (params.has('get') && bucket) {
    const key = params.get('get');
    const value = bucket.get(key);
    out.push(`${key} = ${value === undefined ? '(none)' : decoded.decode(value)}`);
  }
  if (params.has('secret')) {
    const name = params.get('secret');
    const value = configGet(name);
    out.push(`secret ${name}: ${value === undefined ? 'none' : text.encode(value).length} bytes`);
  }
  return out.join('\n') + '\n';
}

addEventListener('fetch', (event) => {
  event.respondWith(
    (async () => {
      const url = new URL(event.request.url);
      const body = new Uint8Array(await event.request.arrayBuffer());
      return new Response(visit(url.searchParams, body), {
        status: 200,
        headers: { 'content-type': 'text/plain' },
      });
    })(),
  );
});

export const subscriber = {
  onMessage(topic, message) {
    if (topic === 'fail') {
      throw 'told to fail';
    }
    const bucket = open('default');
    increment(bucket, 'messages', 1n);
    bucket.set('last-message', message);
    log('info', '', `message on ${topic}`);
  },
};
