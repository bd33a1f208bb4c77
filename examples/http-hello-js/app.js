// A wasi:http/proxy component in JavaScript: every request gets
// `200 Hello from a JavaScript component!` as text/plain.
//
// ComponentizeJS (StarlingMonkey) maps the exported wasi:http/incoming-handler
// onto the service-worker style `fetch` event, so no exports are needed here.

addEventListener('fetch', (event) => {
  event.respondWith(
    new Response('Hello from a JavaScript component!\n', {
      status: 200,
      headers: { 'content-type': 'text/plain' },
    }),
  );
});
