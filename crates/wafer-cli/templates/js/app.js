// A WASI 0.2 HTTP component (wasi:http/proxy) in JavaScript, built with ComponentizeJS:
// its engine maps the exported wasi:http/incoming-handler onto the service-worker `fetch`
// event, so Wafer's call of `handle` arrives here as a Request.

addEventListener('fetch', (event) => {
  const url = new URL(event.request.url, 'http://localhost');
  event.respondWith(
    new Response(`Hello from {{name}}! (${url.pathname}${url.search})\n`, {
      status: 200,
      headers: { 'content-type': 'text/plain; charset=utf-8' },
    }),
  );
});
