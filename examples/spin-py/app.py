"""A Spin HTTP component written with the Spin Python SDK 5: key-value, variables and SQLite.

- `GET /kv?key=K`: the value of K in the `default` store, 404 if absent;
  `PUT` or `POST /kv?key=K` with a body sets it;
- `GET /kv-denied`: opens the store `forbidden`, which the manifest does not grant, and
  answers the error's name (`access-denied` under Spin) with 403;
- `GET /var/NAME`: the value of the component variable NAME;
- `GET /sql[?name=N&qty=Q]`: creates the table `items` in the SQLite database `default` if
  needed, inserts a row with parameters, and answers every row as a JSON array of objects;
- `GET /sql-denied`: opens the database `forbidden` (not granted) and answers the error.
"""

import json
from urllib.parse import parse_qs, urlsplit

from componentize_py_types import Err
from spin_sdk import http, key_value, sqlite, variables
from spin_sdk.http import Request, Response
from spin_sdk.util import collect
from spin_sdk.wit.imports import spin_key_value_key_value_3_0_0 as kv_wit
from spin_sdk.wit.imports import spin_sqlite_sqlite_3_1_0 as sqlite_wit
from spin_sdk.wit.imports import spin_variables_variables_3_0_0 as variables_wit


class HttpHandler(http.Handler):
    async def handle_request(self, request: Request) -> Response:
        url = urlsplit(request.uri)
        path = url.path
        query = {k: v[0] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        method = request.method

        if path == "/kv" and method == "GET":
            return await kv_get(query)
        if path == "/kv" and method in ("PUT", "POST"):
            return await kv_set(query, request.body or b"")
        if path == "/kv-denied" and method == "GET":
            try:
                with await key_value.open("forbidden"):
                    return text(200, "opened")
            except Err as e:
                return text(403, kv_error(e.value))
        if path.startswith("/var/") and method == "GET":
            return await var(path[len("/var/"):])
        if path == "/sql" and method == "GET":
            return await sql(query)
        if path == "/sql-denied" and method == "GET":
            try:
                with await sqlite.Connection.open("forbidden"):
                    return text(200, "opened")
            except Err as e:
                return text(403, sql_error(e.value))
        if path in ("/kv", "/kv-denied", "/sql", "/sql-denied") or path.startswith("/var/"):
            return text(405, "method not allowed")
        return text(404, "not found")


async def kv_get(query: dict[str, str]) -> Response:
    key = query.get("key")
    if key is None:
        return text(400, "missing ?key=")
    try:
        with await key_value.open_default() as store:
            value = await store.get(key)
    except Err as e:
        return text(500, kv_error(e.value))
    if value is None:
        return text(404, "not found")
    return Response(200, {"content-type": "application/octet-stream"}, value)


async def kv_set(query: dict[str, str], body: bytes) -> Response:
    key = query.get("key")
    if key is None:
        return text(400, "missing ?key=")
    try:
        with await key_value.open_default() as store:
            await store.set(key, body)
    except Err as e:
        return text(500, kv_error(e.value))
    return text(200, "stored")


async def var(name: str) -> Response:
    try:
        return text(200, await variables.get(name))
    except Err as e:
        error = e.value
        if isinstance(error, variables_wit.Error_InvalidName):
            return text(404, f"invalid-name: {error.value}")
        if isinstance(error, variables_wit.Error_Undefined):
            return text(404, f"undefined: {error.value}")
        if isinstance(error, variables_wit.Error_Provider):
            return text(500, f"provider: {error.value}")
        return text(500, f"other: {error.value}")


async def sql(query: dict[str, str]) -> Response:
    name = query.get("name", "widget")
    try:
        qty = int(query.get("qty", "1"))
    except ValueError:
        qty = 1
    try:
        with await sqlite.Connection.open_default() as db:
            _, rows, result = await db.execute(
                "CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY AUTOINCREMENT, "
                "name TEXT NOT NULL, qty INTEGER NOT NULL, price REAL, note TEXT)",
                [],
            )
            await collect((rows, result))
            _, rows, result = await db.execute(
                "INSERT INTO items (name, qty, price, note) VALUES (?, ?, ?, ?)",
                [
                    sqlite_wit.Value_Text(name),
                    sqlite_wit.Value_Integer(qty),
                    sqlite_wit.Value_Real(2.5),
                    sqlite_wit.Value_Null(),
                ],
            )
            await collect((rows, result))
            columns, rows, result = await db.execute(
                "SELECT id, name, qty, price, note FROM items ORDER BY id", []
            )
            found = await collect((rows, result))
    except Err as e:
        return text(500, sql_error(e.value))
    body = [
        {column: json_of(value) for column, value in zip(columns, row.values)}
        for row in found
    ]
    return Response(
        200,
        {"content-type": "application/json"},
        json.dumps(body, separators=(",", ":")).encode(),
    )


def json_of(value: sqlite_wit.Value) -> object:
    if isinstance(value, sqlite_wit.Value_Null):
        return None
    if isinstance(value, sqlite_wit.Value_Blob):
        return value.value.decode("utf-8", "replace")
    return value.value


def kv_error(error: kv_wit.Error) -> str:
    """The WIT name of a key-value error, as the other Spin examples answer it."""
    if isinstance(error, kv_wit.Error_StoreTableFull):
        return "store-table-full"
    if isinstance(error, kv_wit.Error_NoSuchStore):
        return "no-such-store"
    if isinstance(error, kv_wit.Error_AccessDenied):
        return "access-denied"
    return f"other: {error.value}"


def sql_error(error: sqlite_wit.Error) -> str:
    """The WIT name of a SQLite error."""
    if isinstance(error, sqlite_wit.Error_NoSuchDatabase):
        return "no-such-database"
    if isinstance(error, sqlite_wit.Error_AccessDenied):
        return "access-denied"
    if isinstance(error, sqlite_wit.Error_InvalidConnection):
        return "invalid-connection"
    if isinstance(error, sqlite_wit.Error_DatabaseFull):
        return "database-full"
    return f"io: {error.value}"


def text(status: int, body: str) -> Response:
    return Response(status, {"content-type": "text/plain; charset=utf-8"}, body.encode())
