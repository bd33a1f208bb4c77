//! `fermyon:spin/sqlite@2.0.0` and `spin:sqlite/sqlite@3.1.0`: statements on the SQLite
//! databases granted by label, through `sqlite:LABEL` host calls (their payloads are in
//! `wafer_host::sqlite`).

use base64::Engine as _;
use serde_json::{json, Value as Json};
use wasmtime::component::{Accessor, FutureReader, Resource, StreamReader};

use super::bindings::fermyon::spin::sqlite as v2;
use super::p3::spin::sqlite::sqlite as v3;
use super::{call3, View};
use crate::interfaces::{Capabilities, HasCapabilities, Refused};

/// An open connection: the host-call namespace of its database, and what the latest
/// statement on it left (for `last-insert-rowid` and `changes`).
pub struct Connection {
    namespace: String,
    last_insert_rowid: i64,
    changes: u64,
}

impl Connection {
    fn labelled(label: &str) -> Self {
        let namespace = match label {
            "default" => "sqlite".to_owned(),
            label => format!("sqlite:{label}"),
        };
        Self {
            namespace,
            last_insert_rowid: 0,
            changes: 0,
        }
    }
}

/// A value of either version, as the host call carries it.
enum Value {
    Integer(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
    Null,
}

impl Value {
    fn to_json(&self) -> Json {
        match self {
            Self::Integer(n) => json!({ "integer": n }),
            Self::Real(x) => json!({ "real": x }),
            Self::Text(s) => json!({ "text": s }),
            Self::Blob(b) => {
                json!({ "blob": base64::engine::general_purpose::STANDARD.encode(b) })
            }
            Self::Null => Json::Null,
        }
    }

    fn from_json(value: &Json) -> Result<Self, String> {
        let bad = || format!("the host answered a value oddly: {value}");
        let Some((kind, inner)) = value.as_object().and_then(|o| o.iter().next()) else {
            return match value.is_null() {
                true => Ok(Self::Null),
                false => Err(bad()),
            };
        };
        Ok(match kind.as_str() {
            "integer" => Self::Integer(inner.as_i64().ok_or_else(bad)?),
            "real" => Self::Real(inner.as_f64().ok_or_else(bad)?),
            "text" => Self::Text(inner.as_str().ok_or_else(bad)?.to_owned()),
            "blob" => Self::Blob(
                base64::engine::general_purpose::STANDARD
                    .decode(inner.as_str().ok_or_else(bad)?)
                    .map_err(|_| bad())?,
            ),
            _ => return Err(bad()),
        })
    }
}

/// What a statement answered.
struct Answer {
    columns: Vec<String>,
    rows: Vec<Vec<Value>>,
    last_insert_rowid: i64,
    changes: u64,
}

/// Why a call failed, in the words of both versions.
enum Failure {
    Denied,
    Io(String),
}

impl From<Refused> for Failure {
    fn from(refused: Refused) -> Self {
        match refused.code() {
            "denied" => Self::Denied,
            _ => Self::Io(refused.0),
        }
    }
}

impl From<Failure> for v2::Error {
    fn from(failure: Failure) -> Self {
        match failure {
            Failure::Denied => Self::AccessDenied,
            Failure::Io(why) if why.contains("database or disk is full") => Self::DatabaseFull,
            Failure::Io(why) => Self::Io(why),
        }
    }
}

impl From<Failure> for v3::Error {
    fn from(failure: Failure) -> Self {
        match failure {
            Failure::Denied => Self::AccessDenied,
            Failure::Io(why) if why.contains("database or disk is full") => Self::DatabaseFull,
            Failure::Io(why) => Self::Io(why),
        }
    }
}

fn payload(statement: &str, parameters: &[Value]) -> Vec<u8> {
    let parameters: Vec<Json> = parameters.iter().map(Value::to_json).collect();
    json!({ "statement": statement, "parameters": parameters })
        .to_string()
        .into_bytes()
}

fn answer(json: &[u8]) -> Result<Answer, Failure> {
    let odd = |why: String| Failure::Io(format!("the host answered sqlite/execute oddly: {why}"));
    let json: Json = serde_json::from_slice(json).map_err(|e| odd(e.to_string()))?;
    let columns = json["columns"]
        .as_array()
        .ok_or_else(|| odd("no columns".into()))?
        .iter()
        .map(|c| c.as_str().unwrap_or_default().to_owned())
        .collect();
    let rows = json["rows"]
        .as_array()
        .ok_or_else(|| odd("no rows".into()))?
        .iter()
        .map(|row| {
            row.as_array()
                .ok_or_else(|| "a row is not a list".to_owned())?
                .iter()
                .map(Value::from_json)
                .collect::<Result<Vec<_>, String>>()
        })
        .collect::<Result<Vec<_>, String>>()
        .map_err(odd)?;
    Ok(Answer {
        columns,
        rows,
        last_insert_rowid: json["last_insert_rowid"].as_i64().unwrap_or(0),
        changes: json["changes"].as_u64().unwrap_or(0),
    })
}

impl From<v2::Value> for Value {
    fn from(value: v2::Value) -> Self {
        match value {
            v2::Value::Integer(n) => Self::Integer(n),
            v2::Value::Real(x) => Self::Real(x),
            v2::Value::Text(s) => Self::Text(s),
            v2::Value::Blob(b) => Self::Blob(b),
            v2::Value::Null => Self::Null,
        }
    }
}

impl From<Value> for v2::Value {
    fn from(value: Value) -> Self {
        match value {
            Value::Integer(n) => Self::Integer(n),
            Value::Real(x) => Self::Real(x),
            Value::Text(s) => Self::Text(s),
            Value::Blob(b) => Self::Blob(b),
            Value::Null => Self::Null,
        }
    }
}

impl From<v3::Value> for Value {
    fn from(value: v3::Value) -> Self {
        match value {
            v3::Value::Integer(n) => Self::Integer(n),
            v3::Value::Real(x) => Self::Real(x),
            v3::Value::Text(s) => Self::Text(s),
            v3::Value::Blob(b) => Self::Blob(b),
            v3::Value::Null => Self::Null,
        }
    }
}

impl From<Value> for v3::Value {
    fn from(value: Value) -> Self {
        match value {
            Value::Integer(n) => Self::Integer(n),
            Value::Real(x) => Self::Real(x),
            Value::Text(s) => Self::Text(s),
            Value::Blob(b) => Self::Blob(b),
            Value::Null => Self::Null,
        }
    }
}

impl Capabilities<'_> {
    async fn sqlite_open(
        &mut self,
        label: &str,
    ) -> wasmtime::Result<Result<Resource<Connection>, Failure>> {
        let connection = Connection::labelled(label);
        match self.host().call(&connection.namespace, "open", b"").await {
            Ok(_) => Ok(Ok(self.table.push(connection)?)),
            Err(refused) => Ok(Err(refused.into())),
        }
    }

    async fn sqlite_execute(
        &mut self,
        connection: &Resource<Connection>,
        statement: &str,
        parameters: Vec<Value>,
    ) -> wasmtime::Result<Result<Answer, Failure>> {
        let namespace = self.table.get(connection)?.namespace.clone();
        let called = self
            .host()
            .call(&namespace, "execute", &payload(statement, &parameters))
            .await;
        let answer = match called {
            Ok(json) => answer(&json),
            Err(refused) => Err(refused.into()),
        };
        if let Ok(answer) = &answer {
            let connection = self.table.get_mut(connection)?;
            connection.last_insert_rowid = answer.last_insert_rowid;
            connection.changes = answer.changes;
        }
        Ok(answer)
    }
}

impl v2::Host for Capabilities<'_> {}

impl v2::HostConnection for Capabilities<'_> {
    async fn open(
        &mut self,
        database: String,
    ) -> wasmtime::Result<Result<Resource<Connection>, v2::Error>> {
        Ok(self.sqlite_open(&database).await?.map_err(Into::into))
    }

    async fn execute(
        &mut self,
        connection: Resource<Connection>,
        statement: String,
        parameters: Vec<v2::Value>,
    ) -> wasmtime::Result<Result<v2::QueryResult, v2::Error>> {
        let parameters = parameters.into_iter().map(Value::from).collect();
        let answer = self
            .sqlite_execute(&connection, &statement, parameters)
            .await?;
        Ok(answer.map_err(Into::into).map(|answer| v2::QueryResult {
            columns: answer.columns,
            rows: answer
                .rows
                .into_iter()
                .map(|values| v2::RowResult {
                    values: values.into_iter().map(Into::into).collect(),
                })
                .collect(),
        }))
    }

    async fn drop(&mut self, connection: Resource<Connection>) -> wasmtime::Result<()> {
        self.table.delete(connection)?;
        Ok(())
    }
}

impl v3::Host for Capabilities<'_> {}

impl v3::HostConnection for Capabilities<'_> {
    async fn open(
        &mut self,
        database: String,
    ) -> wasmtime::Result<Result<Resource<Connection>, v3::Error>> {
        Ok(self.sqlite_open(&database).await?.map_err(Into::into))
    }

    async fn execute(
        &mut self,
        connection: Resource<Connection>,
        statement: String,
        parameters: Vec<v3::Value>,
    ) -> wasmtime::Result<Result<v3::QueryResult, v3::Error>> {
        let parameters = parameters.into_iter().map(Value::from).collect();
        let answer = self
            .sqlite_execute(&connection, &statement, parameters)
            .await?;
        Ok(answer.map_err(Into::into).map(|answer| v3::QueryResult {
            columns: answer.columns,
            rows: answer
                .rows
                .into_iter()
                .map(|values| v3::RowResult {
                    values: values.into_iter().map(Into::into).collect(),
                })
                .collect(),
        }))
    }

    async fn last_insert_rowid(
        &mut self,
        connection: Resource<Connection>,
    ) -> wasmtime::Result<i64> {
        Ok(self.table.get(&connection)?.last_insert_rowid)
    }

    async fn changes(&mut self, connection: Resource<Connection>) -> wasmtime::Result<u64> {
        Ok(self.table.get(&connection)?.changes)
    }

    async fn drop(&mut self, connection: Resource<Connection>) -> wasmtime::Result<()> {
        self.table.delete(connection)?;
        Ok(())
    }
}

impl<T: HasCapabilities> v3::HostConnectionWithStore<T> for View {
    async fn open_async(
        accessor: &Accessor<T, Self>,
        database: String,
    ) -> wasmtime::Result<Result<Resource<Connection>, v3::Error>> {
        let connection = Connection::labelled(&database);
        if let Err(refused) = call3(accessor, &connection.namespace, "open", b"").await {
            return Ok(Err(Failure::from(refused).into()));
        }
        let pushed = accessor.with(|mut access| access.get().table.push(connection))?;
        Ok(Ok(pushed))
    }

    async fn execute_async(
        accessor: &Accessor<T, Self>,
        connection: Resource<Connection>,
        statement: String,
        parameters: Vec<v3::Value>,
    ) -> wasmtime::Result<
        Result<
            (
                Vec<String>,
                StreamReader<v3::RowResult>,
                FutureReader<Result<(), v3::Error>>,
            ),
            v3::Error,
        >,
    > {
        let namespace = accessor.with(|mut access| {
            access
                .get()
                .table
                .get(&connection)
                .map(|c| c.namespace.clone())
        })?;
        let parameters: Vec<Value> = parameters.into_iter().map(Value::from).collect();
        let called = call3(
            accessor,
            &namespace,
            "execute",
            &payload(&statement, &parameters),
        )
        .await;
        let answer = match called.map_err(Failure::from).and_then(|json| answer(&json)) {
            Ok(answer) => answer,
            Err(failure) => return Ok(Err(failure.into())),
        };
        accessor.with(|mut access| {
            let state = access.get();
            let connection = state.table.get_mut(&connection)?;
            connection.last_insert_rowid = answer.last_insert_rowid;
            connection.changes = answer.changes;
            let rows: Vec<v3::RowResult> = answer
                .rows
                .into_iter()
                .map(|values| v3::RowResult {
                    values: values.into_iter().map(Into::into).collect(),
                })
                .collect();
            let rows = StreamReader::new(&mut access, rows)?;
            let done = FutureReader::new(&mut access, async { Ok::<_, wasmtime::Error>(Ok(())) })?;
            Ok(Ok((answer.columns, rows, done)))
        })
    }

    async fn last_insert_rowid_async(
        accessor: &Accessor<T, Self>,
        connection: Resource<Connection>,
    ) -> wasmtime::Result<i64> {
        accessor.with(|mut access| Ok(access.get().table.get(&connection)?.last_insert_rowid))
    }

    async fn changes_async(
        accessor: &Accessor<T, Self>,
        connection: Resource<Connection>,
    ) -> wasmtime::Result<u64> {
        accessor.with(|mut access| Ok(access.get().table.get(&connection)?.changes))
    }
}
