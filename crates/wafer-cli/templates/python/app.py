"""A WASI 0.2 HTTP component (wasi:http/proxy) in Python, built with componentize-py:
Wafer calls `handle` for each request.

componentize-py generates the `wit_world` bindings from wit/ when it builds.
"""

from wit_world import exports
from wit_world.imports.types import (
    Fields,
    IncomingRequest,
    OutgoingBody,
    OutgoingResponse,
    ResponseOutparam,
)
from componentize_py_types import Ok


class IncomingHandler(exports.IncomingHandler):
    """Implements the exported wasi:http/incoming-handler interface."""

    def handle(self, request: IncomingRequest, response_out: ResponseOutparam) -> None:
        path = request.path_with_query() or "/"
        greeting = f"Hello from {{name}}! ({path})\n".encode()
        response = OutgoingResponse(
            Fields.from_list([("content-type", b"text/plain; charset=utf-8")])
        )
        response.set_status_code(200)
        body = response.body()
        # The response head goes to the client first; the body streams after it.
        ResponseOutparam.set(response_out, Ok(response))
        # `with` drops the stream, which must happen before the body is finished.
        with body.write() as stream:
            stream.blocking_write_and_flush(greeting)  # up to 4096 bytes per call
        OutgoingBody.finish(body, None)
