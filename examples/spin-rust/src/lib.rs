//! A Spin HTTP component written with the Spin Rust SDK 7: key-value, variables and SQLite.
//!
//! - `GET /kv?key=K`: the value of K in the `default` store, 404 if absent;
//!   `PUT` or `POST /kv?key=K` with a body sets it;
//! - `GET /kv-denied`: opens the store `forbidden`, which the manifest does not grant, and
//!   answers the error's name (`access-denied` under Spin) with 403;
//! - `GET /var/NAME`: the value of the component variable NAME;
//! - `GET /sql[?name=N&qty=Q]`: creates the table `items` in the SQLite database `default` if
//!   needed, inserts a row with parameters, and answers every row as a JSON array of objects;
//! - `GET /sql-denied`: opens the database `forbidden` (not granted) and answers the error.

use bytes::Bytes;
use spin_sdk::http::{FullBody, IntoResponse, Method, Request, Response, body::IncomingBodyExt};
use spin_sdk::http_service;
use spin_sdk::{key_value, sqlite, variables};

/// Every response body here is complete in memory.
type Body = FullBody<Bytes>;

#[http_service]
async fn handle(req: Request) -> anyhow::Result<impl IntoResponse> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let body = req.into_body().bytes().await?;

    Ok(match (method, path.as_str()) {
        (Method::GET, "/kv") => kv_get(&query).await,
        (Method::PUT | Method::POST, "/kv") => kv_set(&query, &body).await,
        (Method::GET, "/kv-denied") => match key_value::Store::open("forbidden").await {
            Ok(_) => text(200, "opened"),
            Err(e) => text(403, &kv_error(&e)),
        },
        (Method::GET, p) if p.starts_with("/var/") => var(&p["/var/".len()..]).await,
        (Method::GET, "/sql") => sql(&query).await,
        (Method::GET, "/sql-denied") => match sqlite::Connection::open("forbidden").await {
            Ok(_) => text(200, "opened"),
            Err(e) => text(403, &sql_error(&e)),
        },
        (_, "/kv" | "/kv-denied" | "/sql" | "/sql-denied") => text(405, "method not allowed"),
        _ if path.starts_with("/var/") => text(405, "method not allowed"),
        _ => text(404, "not found"),
    })
}

async fn kv_get(query: &str) -> Response<Body> {
    let Some(key) = param(query, "key") else {
        return text(400, "missing ?key=");
    };
    let store = match key_value::Store::open_default().await {
        Ok(store) => store,
        Err(e) => return text(500, &kv_error(&e)),
    };
    match store.get(&key).await {
        Ok(Some(value)) => Response::builder()
            .status(200)
            .header("content-type", "application/octet-stream")
            .body(Body::new(Bytes::from(value)))
            .unwrap(),
        Ok(None) => text(404, "not found"),
        Err(e) => text(500, &kv_error(&e)),
    }
}

async fn kv_set(query: &str, body: &[u8]) -> Response<Body> {
    let Some(key) = param(query, "key") else {
        return text(400, "missing ?key=");
    };
    let store = match key_value::Store::open_default().await {
        Ok(store) => store,
        Err(e) => return text(500, &kv_error(&e)),
    };
    match store.set(&key, body).await {
        Ok(()) => text(200, "stored"),
        Err(e) => text(500, &kv_error(&e)),
    }
}

async fn var(name: &str) -> Response<Body> {
    match variables::get(name).await {
        Ok(value) => text(200, &value),
        Err(e) => {
            let status = match e {
                variables::Error::InvalidName(_) | variables::Error::Undefined(_) => 404,
                _ => 500,
            };
            let message = match &e {
                variables::Error::InvalidName(m) => format!("invalid-name: {m}"),
                variables::Error::Undefined(m) => format!("undefined: {m}"),
                variables::Error::Provider(m) => format!("provider: {m}"),
                variables::Error::Other(m) => format!("other: {m}"),
            };
            text(status, &message)
        }
    }
}

async fn sql(query: &str) -> Response<Body> {
    let name = param(query, "name").unwrap_or_else(|| "widget".into());
    let qty: i64 = param(query, "qty").and_then(|q| q.parse().ok()).unwrap_or(1);
    match sql_rows(name, qty).await {
        Ok(json) => Response::builder()
            .status(200)
            .header("content-type", "application/json")
            .body(Body::new(Bytes::from(json)))
            .unwrap(),
        Err(e) => text(500, &sql_error(&e)),
    }
}

async fn sql_rows(name: String, qty: i64) -> Result<String, sqlite::Error> {
    use sqlite::Value;
    let db = sqlite::Connection::open_default().await?;
    db.execute(
        "CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY AUTOINCREMENT, \
         name TEXT NOT NULL, qty INTEGER NOT NULL, price REAL, note TEXT)",
        [],
    )
    .await?
    .result()
    .await?;
    db.execute(
        "INSERT INTO items (name, qty, price, note) VALUES (?, ?, ?, ?)",
        [Value::Text(name), Value::Integer(qty), Value::Real(2.5), Value::Null],
    )
    .await?
    .result()
    .await?;
    let result = db
        .execute("SELECT id, name, qty, price, note FROM items ORDER BY id", [])
        .await?;
    let columns = result.columns().to_vec();
    let rows = result.collect().await?;
    let rows: Vec<serde_json::Value> = rows
        .iter()
        .map(|row| {
            let object = columns
                .iter()
                .zip(&row.values)
                .map(|(column, value)| (column.clone(), json_of(value)))
                .collect();
            serde_json::Value::Object(object)
        })
        .collect();
    Ok(serde_json::Value::Array(rows).to_string())
}

fn json_of(value: &sqlite::Value) -> serde_json::Value {
    use sqlite::Value;
    match value {
        Value::Integer(i) => (*i).into(),
        Value::Real(f) => (*f).into(),
        Value::Text(s) => s.clone().into(),
        Value::Blob(b) => String::from_utf8_lossy(b).into_owned().into(),
        Value::Null => serde_json::Value::Null,
    }
}

/// The WIT name of a key-value error, as the other Spin examples answer it.
fn kv_error(e: &key_value::Error) -> String {
    match e {
        key_value::Error::StoreTableFull => "store-table-full".into(),
        key_value::Error::NoSuchStore => "no-such-store".into(),
        key_value::Error::AccessDenied => "access-denied".into(),
        key_value::Error::Other(m) => format!("other: {m}"),
    }
}

/// The WIT name of a SQLite error.
fn sql_error(e: &sqlite::Error) -> String {
    match e {
        sqlite::Error::NoSuchDatabase => "no-such-database".into(),
        sqlite::Error::AccessDenied => "access-denied".into(),
        sqlite::Error::InvalidConnection => "invalid-connection".into(),
        sqlite::Error::DatabaseFull => "database-full".into(),
        sqlite::Error::Io(m) => format!("io: {m}"),
    }
}

fn text(status: u16, body: &str) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "text/plain; charset=utf-8")
        .body(Body::new(Bytes::from(body.to_owned())))
        .unwrap()
}

/// The first value of the query parameter `name`, percent-decoded (`+` is a space).
fn param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (decode(k) == name).then(|| decode(v))
    })
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'+', _) => out.push(b' '),
            (b'%', Some(b)) => {
                out.push(b);
                i += 2;
            }
            (b, _) => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
