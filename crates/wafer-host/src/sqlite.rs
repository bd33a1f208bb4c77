//! `sqlite`: SQLite databases granted by label (a Spin app's `sqlite_databases`), each a
//! file `DATA/sqlite/NAME.db` of the real SQLite (rusqlite's bundled library), shared by
//! the functions granted the same database.
//!
//! Host-call namespace `sqlite:LABEL` (plain `sqlite` is `default`):
//!
//! - `open`, empty payload: empty if the function may open the database, else `denied`.
//! - `execute`, `{"statement": SQL, "parameters": [VALUE, ...]}`: runs one statement and
//!   answers `{"columns": [...], "rows": [[VALUE, ...], ...], "last_insert_rowid": N,
//!   "changes": N}`. A value is `null`, `{"integer": N}`, `{"real": X}`, `{"text": S}` or
//!   `{"blob": BASE64}`.
//!
//! Limits: a statement still running at the call's deadline is interrupted (`failed`); an
//! answer holds at most [`MAX_ROWS`] rows and [`MAX_ANSWER`] bytes (`too_large`); a
//! database grows to at most [`MAX_DATABASE`] bytes (SQLite's own `SQLITE_FULL`).
//! Statements on one database run one at a time, each on a blocking thread.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use rusqlite::types::{Value, ValueRef};
use serde::{Deserialize, Serialize};
use wafer_registry::{Deployment, FunctionName};

use crate::{json, unknown_operation, GuestError};

/// Most rows one statement answers.
pub const MAX_ROWS: usize = 100_000;
/// Most bytes of one answer (its JSON).
pub const MAX_ANSWER: usize = 64 << 20;
/// Largest database, in bytes (SQLite's `max_page_count` at its page size).
pub const MAX_DATABASE: u64 = 1 << 30;

/// The databases of one node, opened on first use.
pub struct Sqlite {
    dir: PathBuf,
    open: Mutex<HashMap<FunctionName, Arc<Mutex<rusqlite::Connection>>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Execute {
    statement: String,
    #[serde(default)]
    parameters: Vec<SqlValue>,
}

/// A value as host calls carry it.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "lowercase")]
pub enum SqlValue {
    /// A 64-bit integer.
    Integer(i64),
    /// A double.
    Real(f64),
    /// UTF-8 text.
    Text(String),
    /// Bytes, base64 in JSON.
    Blob(#[serde(with = "wafer_abi::base64_bytes")] Vec<u8>),
    /// SQL `NULL`.
    #[serde(untagged)]
    Null(()),
}

/// What `execute` answers.
#[derive(Serialize, Deserialize, Debug, Default)]
pub struct Answer {
    /// The result's column names.
    pub columns: Vec<String>,
    /// The rows, each a value per column.
    pub rows: Vec<Vec<SqlValue>>,
    /// The rowid of the connection's latest `INSERT`.
    pub last_insert_rowid: i64,
    /// Rows the statement changed.
    pub changes: u64,
}

/// The database name of `label` for `function`: granted by `sqlite_databases`, else
/// `denied`.
fn database<'a>(function: &'a Deployment, label: &str) -> Result<&'a FunctionName, GuestError> {
    function
        .config
        .grants
        .sqlite_databases
        .get(label)
        .ok_or_else(|| {
            GuestError::Denied(format!(
                "this function may not open the SQLite database `{label}` (not in its \
                 `sqlite_databases`)"
            ))
        })
}

impl Sqlite {
    /// The databases in `dir` (created when the first is opened).
    pub fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            open: Mutex::default(),
        }
    }

    /// Answers one `sqlite:LABEL` host call of `function`.
    pub(crate) async fn call(
        &self,
        function: &Deployment,
        label: &str,
        operation: &str,
        payload: &[u8],
        deadline: Instant,
    ) -> Result<Vec<u8>, GuestError> {
        let name = database(function, label)?;
        match operation {
            "open" => Ok(Vec::new()),
            "execute" => {
                let execute: Execute = json(payload, "sqlite/execute")?;
                let connection = self.connection(name)?;
                let answer = tokio::task::spawn_blocking(move || {
                    let mut connection = connection.lock().unwrap_or_else(|e| e.into_inner());
                    run(&mut connection, &execute, deadline)
                })
                .await
                .map_err(|e| GuestError::Failed(format!("the statement's task failed: {e}")))??;
                let json = serde_json::to_vec(&answer).map_err(crate::kv::failed)?;
                if json.len() > MAX_ANSWER {
                    return Err(GuestError::TooLarge(format!(
                        "the answer is {} bytes; at most {MAX_ANSWER} are answered",
                        json.len()
                    )));
                }
                Ok(json)
            }
            other => Err(unknown_operation("sqlite", other, "open, execute")),
        }
    }

    /// The open connection to database `name`, opening (creating) it on first use.
    fn connection(
        &self,
        name: &FunctionName,
    ) -> Result<Arc<Mutex<rusqlite::Connection>>, GuestError> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(connection) = open.get(name) {
            return Ok(connection.clone());
        }
        std::fs::create_dir_all(&self.dir).map_err(|e| {
            GuestError::Failed(format!("cannot create {}: {e}", self.dir.display()))
        })?;
        let path = self.dir.join(format!("{name}.db"));
        let failed = |e: rusqlite::Error| {
            GuestError::Failed(format!("cannot open the SQLite database `{name}`: {e}"))
        };
        let connection = rusqlite::Connection::open(&path).map_err(failed)?;
        // Durable on answer (WAL with full sync), and bounded in size.
        connection
            .pragma_update(None, "journal_mode", "wal")
            .map_err(failed)?;
        connection
            .pragma_update(None, "synchronous", "full")
            .map_err(failed)?;
        let page: i64 = connection
            .pragma_query_value(None, "page_size", |row| row.get(0))
            .map_err(failed)?;
        connection
            .pragma_update(None, "max_page_count", MAX_DATABASE as i64 / page.max(512))
            .map_err(failed)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600));
        }
        let connection = Arc::new(Mutex::new(connection));
        open.insert(name.clone(), connection.clone());
        Ok(connection)
    }
}

/// Runs one statement, interrupted at `deadline`.
fn run(
    connection: &mut rusqlite::Connection,
    execute: &Execute,
    deadline: Instant,
) -> Result<Answer, GuestError> {
    let failed = |e: rusqlite::Error| GuestError::Failed(e.to_string());
    connection
        .progress_handler(1000, Some(move || Instant::now() >= deadline))
        .map_err(failed)?;
    let answer = (|| {
        let mut statement = connection.prepare(&execute.statement).map_err(failed)?;
        let columns: Vec<String> = statement.column_names().map(str::to_owned).collect();
        let parameters = execute.parameters.iter().map(|v| match v {
            SqlValue::Integer(n) => Value::Integer(*n),
            SqlValue::Real(x) => Value::Real(*x),
            SqlValue::Text(s) => Value::Text(s.clone()),
            SqlValue::Blob(b) => Value::Blob(b.clone()),
            SqlValue::Null(()) => Value::Null,
        });
        let mut rows = statement
            .query(rusqlite::params_from_iter(parameters))
            .map_err(failed)?;
        let mut answer = Answer {
            columns,
            ..Answer::default()
        };
        while let Some(row) = rows.next().map_err(failed)? {
            if answer.rows.len() == MAX_ROWS {
                return Err(GuestError::TooLarge(format!(
                    "the statement answers more than {MAX_ROWS} rows"
                )));
            }
            let values = (0..answer.columns.len())
                .map(|i| {
                    Ok(match row.get_ref(i).map_err(failed)? {
                        ValueRef::Null => SqlValue::Null(()),
                        ValueRef::Integer(n) => SqlValue::Integer(n),
                        ValueRef::Real(x) => SqlValue::Real(x),
                        ValueRef::Text(t) => {
                            SqlValue::Text(String::from_utf8_lossy(t).into_owned())
                        }
                        ValueRef::Blob(b) => SqlValue::Blob(b.to_vec()),
                    })
                })
                .collect::<Result<Vec<_>, GuestError>>()?;
            answer.rows.push(values);
        }
        Ok(answer)
    })();
    let _ = connection.progress_handler(0, None::<fn() -> bool>);
    let mut answer = answer.map_err(|e| match e {
        GuestError::Failed(why) if Instant::now() >= deadline => GuestError::Failed(format!(
            "the statement was interrupted at the call's deadline ({why})"
        )),
        other => other,
    })?;
    answer.last_insert_rowid = connection.last_insert_rowid();
    answer.changes = connection.changes();
    Ok(answer)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn values_travel_as_json() {
        let values = vec![
            SqlValue::Null(()),
            SqlValue::Integer(-3),
            SqlValue::Real(1.5),
            SqlValue::Text("hi".into()),
            SqlValue::Blob(vec![0, 255]),
        ];
        let json = serde_json::to_string(&values).unwrap();
        assert_eq!(
            json,
            r#"[null,{"integer":-3},{"real":1.5},{"text":"hi"},{"blob":"AP8="}]"#
        );
        assert_eq!(
            serde_json::from_str::<Vec<SqlValue>>(&json).unwrap(),
            values
        );
    }

    #[test]
    fn statements_run_with_parameters_and_stop_at_the_deadline() {
        let dir = tempfile::tempdir().unwrap();
        let sqlite = Sqlite::new(dir.path().to_owned());
        let name: FunctionName = "app--default".parse().unwrap();
        let connection = sqlite.connection(&name).unwrap();
        let mut connection = connection.lock().unwrap();
        let later = Instant::now() + std::time::Duration::from_secs(30);
        let exec =
            |c: &mut rusqlite::Connection, sql: &str, parameters: Vec<SqlValue>, deadline| {
                run(
                    c,
                    &Execute {
                        statement: sql.into(),
                        parameters,
                    },
                    deadline,
                )
            };
        exec(
            &mut connection,
            "CREATE TABLE t (a INTEGER, b TEXT)",
            vec![],
            later,
        )
        .unwrap();
        let inserted = exec(
            &mut connection,
            "INSERT INTO t VALUES (?, ?)",
            vec![SqlValue::Integer(7), SqlValue::Text("seven".into())],
            later,
        )
        .unwrap();
        assert_eq!((inserted.changes, inserted.last_insert_rowid), (1, 1));
        let read = exec(&mut connection, "SELECT a, b FROM t", vec![], later).unwrap();
        assert_eq!(read.columns, ["a", "b"]);
        assert_eq!(
            read.rows,
            [[SqlValue::Integer(7), SqlValue::Text("seven".into())]]
        );
        let endless = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) \
                       SELECT count(*) FROM c";
        let e = exec(&mut connection, endless, vec![], Instant::now()).unwrap_err();
        assert!(e.to_string().contains("interrupted"), "{e}");
        assert!(dir.path().join("app--default.db").exists());
    }
}
