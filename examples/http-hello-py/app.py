"""A wasi:http/proxy component in Python: every request gets
`200 Hello from a Python component!` as text/plain.

Built with componentize-py, which generates the `wit_world` bindings package
from wit/ at build time (see README.md).
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

GREETING = b"Hello from a Python component!\n"


class IncomingHandler(exports.IncomingHandler):
    """Implements the exported wasi:http/incoming-handler interface."""

    def handle(self, request: IncomingRequest, response_out: ResponseOutparam) -> None:
        response = OutgoingResponse(Fields.from_list([("content-type", b"text/plain")]))
        response.set_status_code(200)
        body = response.body()
        # Hand the response head to the host, then stream the body.
        ResponseOutparam.set(response_out, Ok(response))
        # `with` drops the stream, which must happen before the body is finished.
        with body.write() as stream:
            stream.blocking_write_and_flush(GREETING)  # at most 4096 bytes per call
        OutgoingBody.finish(body, None)
