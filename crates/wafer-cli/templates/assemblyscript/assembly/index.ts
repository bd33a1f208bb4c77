// A CGI function (WAGI) in AssemblyScript, on WASI through @assemblyscript/wasi-shim:
// Wafer runs `_start` once per request, with the request in the environment
// (REQUEST_METHOD, PATH_INFO, QUERY_STRING, HTTP_*) and its body on stdin. What it writes to
// stdout is the response: headers, a blank line, the body.

function env(name: string): string {
  return process.env.has(name) ? process.env.get(name) : "";
}

// The request body's length: stdin read to its end.
let bytesIn = 0;
const buffer = new ArrayBuffer(4096);
for (let n = process.stdin.read(buffer); n > 0; n = process.stdin.read(buffer)) {
  bytesIn += n;
}

process.stdout.write("Content-Type: text/plain; charset=utf-8\n\n");
process.stdout.write(
  "Hello from {{name}}! (" + env("REQUEST_METHOD") + " " + env("PATH_INFO") + ", " +
    bytesIn.toString() + " bytes in)\n",
);
