"""A wasi:http/service component (WASI 0.3, component-model async) in Python.

- a path ending in `/echo` streams the request body straight back, with its
  content type;
- anything else answers `200 Hello from a Python WASI 0.3 component!`.

`handle` is a coroutine that returns the response; its body is a stream the
guest writes (or forwards) after returning. Built with componentize-py, which
generates the `wit_world` bindings package from wit/ at build time (see README.md).
"""

import componentize_py_async_support
import wit_world
from componentize_py_async_support.futures import FutureReader
from componentize_py_async_support.streams import ByteStreamWriter
from componentize_py_types import Ok, Result
from wit_world import exports
from wit_world.imports.wasi_http_types import ErrorCode, Fields, Request, Response

GREETING = b"Hello from a Python WASI 0.3 component!\n"


class Handler(exports.Handler):
    """Implements the exported wasi:http/handler interface."""

    async def handle(self, request: Request) -> Response:
        path = (request.get_path_with_query() or "").split("?", 1)[0]
        if path.endswith("/echo"):
            return echo(request)
        return text(GREETING)


def text(body: bytes) -> Response:
    """A text/plain response whose body is `body`, written once the response is handed back."""
    writer, reader = wit_world.byte_stream()
    headers = Fields.from_list([("content-type", b"text/plain")])
    # The second value, a future of how sending the response went, is not needed.
    response, _ = Response.new(headers, reader, no_trailers())
    # A stream write waits for its reader, which the host has only after `handle`
    # returns: so the body is written by a task spawned into this call, which keeps
    # the call (the component-model task) alive until the body is written.
    componentize_py_async_support.spawn(write_body(writer, body))
    return response


async def write_body(writer: ByteStreamWriter, body: bytes) -> None:
    # Leaving `with` closes the stream: the end of the body.
    with writer:
        await writer.write_all(body)


def echo(request: Request) -> Response:
    """The request's body (and trailers) as the response's: streamed, never held whole."""
    content_type = request.get_headers().get("content-type")[:1]
    headers = Fields.from_list([("content-type", value) for value in content_type])
    body, trailers = Request.consume_body(request, handling_done())
    response, _ = Response.new(headers, body, trailers)
    return response


def no_trailers() -> FutureReader[Result[Fields | None, ErrorCode]]:
    """A trailers future that resolves to "no trailers".

    Only the reader is kept: the writer, dropped at once, sends its default
    value, `Ok(None)`, when the host reads the future.
    """
    _, reader = wit_world.result_option_wasi_http_types_fields_wasi_http_types_error_code_future(
        lambda: Ok(None)
    )
    return reader


def handling_done() -> FutureReader[Result[None, ErrorCode]]:
    """The future `consume_body` takes to hear of an error in handling the request:
    resolves to `Ok(None)` (no error), like `no_trailers`."""
    _, reader = wit_world.result_unit_wasi_http_types_error_code_future(lambda: Ok(None))
    return reader
