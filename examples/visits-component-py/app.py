"""The visits example as a Python component (componentize-py): it counts its visits in the
function's key-value store (wasi:keyvalue), greets with a config value (wasi:config), logs
each visit (wasi:logging) and publishes on request (wafer:pubsub), like
examples/visits-component-rust.

- config `greeting` (default `hello`);
- kv counter `visits`, incremented atomically (an error is reported as `kv error: MSG` and
  the visit number is 0);
- log line `visit N`;
- output `GREETING, visit N`, then one line for each of the query parameters
  `publish=TOPIC` (publishes the request body), `get=KEY` (the value of a key, or
  `(none)`) and `secret=NAME` (the length of a config value or secret, never the value).

Subscribed to topics, it takes each message through its wafer:pubsub/subscriber export: it
counts it in `messages`, keeps it in `last-message` and logs `message on TOPIC`; a message on
the topic `fail` is refused.
"""

from componentize_py_types import Err, Ok
from wit_world import exports
from wit_world.imports import atomics, logging, publisher
from wit_world.imports import wasi_config_store as config
from wit_world.imports import wasi_keyvalue_store as kv
from wit_world.imports.types import (
    Fields,
    IncomingRequest,
    OutgoingBody,
    OutgoingResponse,
    ResponseOutparam,
)


def describe(error: Err) -> str:
    """The text of an error a capability raised."""
    value = error.value
    return getattr(value, "value", None) or type(value).__name__


def visit(params: dict, body: bytes) -> str:
    greeting = "hello"
    try:
        greeting = config.get("greeting") or greeting
    except Err as e:
        pass
    lines = []
    bucket = None
    try:
        bucket = kv.open("default")
        number = atomics.increment(bucket, "visits", 1)
    except Err as e:
        number = 0
        lines.append(f"kv error: {describe(e)}")
    logging.log(logging.Level.INFO, "", f"visit {number}")
    out = [f"{greeting}, visit {number}"] + lines
    if "publish" in params:
        try:
            publisher.publish(params["publish"], body)
            out.append("published")
        except Err as e:
            out.append(f"publish error: {e.value}")
    if "get" in params and bucket is not None:
        key = params["get"]
        value = bucket.get(key)
        out.append(f"{key} = {value.decode('utf-8', 'replace') if value is not None else '(none)'}")
    if "secret" in params:
        name = params["secret"]
        value = config.get(name)
        out.append(f"secret {name}: {len(value.encode()) if value is not None else 'none'} bytes")
    return "\n".join(out) + "\n"


def read_body(request: IncomingRequest) -> bytes:
    body = request.consume()
    stream = body.stream()
    chunks = []
    while True:
        try:
            chunks.append(stream.blocking_read(65536))
        except Err:
            break
    stream.__exit__(None, None, None)
    return b"".join(chunks)


class IncomingHandler(exports.IncomingHandler):
    """Implements the exported wasi:http/incoming-handler interface."""

    def handle(self, request: IncomingRequest, response_out: ResponseOutparam) -> None:
        path = request.path_with_query() or ""
        query = path.split("?", 1)[1] if "?" in path else ""
        params = dict(pair.split("=", 1) for pair in query.split("&") if "=" in pair)
        text = visit(params, read_body(request)).encode()
        response = OutgoingResponse(Fields.from_list([("content-type", b"text/plain")]))
        out = response.body()
        ResponseOutparam.set(response_out, Ok(response))
        with out.write() as stream:
            for start in range(0, len(text), 4096):
                stream.blocking_write_and_flush(text[start : start + 4096])
        OutgoingBody.finish(out, None)


class Subscriber(exports.Subscriber):
    """Implements the exported wafer:pubsub/subscriber interface."""

    def on_message(self, topic: str, message: bytes) -> None:
        if topic == "fail":
            raise Err("told to fail")
        bucket = kv.open("default")
        atomics.increment(bucket, "messages", 1)
        bucket.set("last-message", message)
        logging.log(logging.Level.INFO, "", f"message on {topic}")
