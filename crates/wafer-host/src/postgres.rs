//! `postgres`: PostgreSQL servers a function reaches over the network (Spin's outbound
//! PostgreSQL), with the real client (`tokio-postgres`, TLS by rustls), at the addresses its
//! outbound allow-list grants (`postgres://HOST:PORT` or `*://HOST:PORT` entries of Spin's
//! `allowed_outbound_hosts`, port 5432 by default).
//!
//! Host-call namespace `postgres` (payloads in `docs/host-calls.md`):
//!
//! - `open`, `{"address": A, "ca_root": PEM}` (`ca_root` optional): checks every host of the
//!   address (a libpq `key=value` string or a `postgres://` URL) against the allow-list, then
//!   connects to the addresses the names resolve to that the function may reach, and answers
//!   `{"connection": N}`.
//! - `query`, `{"connection": N, "statement": SQL, "parameters": [VALUE, ...]}`: answers
//!   `{"columns": [{"name": C, "type": T}, ...], "rows": [[VALUE, ...], ...]}`.
//! - `execute`, the same payload: answers `{"rows_affected": N}`.
//! - `close`, `{"connection": N}`: closes it.
//!
//! An error the database reports for a statement is an answer, not a failed call:
//! `{"db_error": {"text", "severity", "code", "message", "detail", "extras"}}`.
//!
//! A connection belongs to the guest call that opened it (its [`Session`]): it is closed
//! when the guest closes it or the call ends, whichever is first, and a connection number is
//! nothing in any other call. A function holds at most [`MAX_CONNECTIONS`] at once on a
//! node; a statement still running at the call's deadline is cancelled; an answer holds at
//! most [`MAX_ROWS`] rows and about [`MAX_ANSWER`] bytes.

use std::collections::HashMap;
use std::error::Error as _;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use futures_util::TryStreamExt as _;
use serde::{Deserialize, Serialize};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_postgres::config::Host;
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Config, Row};
use tokio_postgres_rustls::MakeRustlsConnect;
use wafer_registry::{Deployment, FunctionName, HostPattern};

use crate::{json, unknown_operation, GuestError, Session};

mod types;

pub use wafer_abi::postgres::{Bound, Column, DataType, DbError, Interval, PgValue};

/// Most connections one function holds open at once on a node: Spin's pool size per
/// address. One more is refused (`failed: too many connections ...`).
pub const MAX_CONNECTIONS: usize = 64;
/// Most rows one statement answers.
pub const MAX_ROWS: usize = 100_000;
/// Most bytes of the values of one answer, counted as they arrive.
pub const MAX_ANSWER: usize = 64 << 20;
/// How long the cancel request for a statement past its deadline may take.
const CANCEL_TIMEOUT: Duration = Duration::from_secs(5);

/// The server-wide part: each function's connection count.
#[derive(Default)]
pub struct Postgres {
    permits: Mutex<HashMap<FunctionName, Arc<Semaphore>>>,
}

/// The connections of one guest call, by number; dropped with its [`Session`].
#[derive(Default)]
pub(crate) struct Connections {
    open: Mutex<HashMap<u64, Arc<Open>>>,
    next: AtomicU64,
}

impl Connections {
    fn get(&self, id: u64) -> Result<Arc<Open>, GuestError> {
        let open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.get(&id).cloned().ok_or_else(|| {
            GuestError::NotFound(format!(
                "no PostgreSQL connection {id} is open in this call"
            ))
        })
    }
}

/// An open connection. Dropping the client ends the connection's task, which closes the
/// socket.
struct Open {
    client: Client,
    tls: MakeRustlsConnect,
    _permit: OwnedSemaphorePermit,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OpenRequest {
    address: String,
    #[serde(default)]
    ca_root: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Statement {
    connection: u64,
    statement: String,
    #[serde(default)]
    parameters: Vec<PgValue>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Close {
    connection: u64,
}

/// What `query` answers.
#[derive(Serialize, Deserialize, Debug, Default)]
pub struct Rows {
    /// The statement's columns.
    pub columns: Vec<Column>,
    /// The rows, each a value per column.
    pub rows: Vec<Vec<PgValue>>,
}

/// A statement's end: rows (or a count), or the database's error.
enum Outcome<T> {
    Done(T),
    Refused(DbError),
}

impl Postgres {
    /// Answers one `postgres` host call of `function` in the call holding `session`.
    pub(crate) async fn call(
        &self,
        function: &Deployment,
        session: &Session,
        operation: &str,
        payload: &[u8],
        deadline: Instant,
    ) -> Result<Vec<u8>, GuestError> {
        match operation {
            "open" => {
                let open: OpenRequest = json(payload, "postgres/open")?;
                let id = self.open(function, session, open, deadline).await?;
                Ok(serde_json::json!({ "connection": id })
                    .to_string()
                    .into_bytes())
            }
            "query" => {
                let statement: Statement = json(payload, "postgres/query")?;
                let open = session.postgres.get(statement.connection)?;
                let answer = match query(&open, &statement, deadline).await? {
                    Outcome::Done(rows) => serde_json::to_vec(&rows),
                    Outcome::Refused(error) => serde_json::to_vec(&refused(error)),
                };
                answer.map_err(crate::kv::failed)
            }
            "execute" => {
                let statement: Statement = json(payload, "postgres/execute")?;
                let open = session.postgres.get(statement.connection)?;
                let answer = match execute(&open, &statement, deadline).await? {
                    Outcome::Done(n) => serde_json::json!({ "rows_affected": n }),
                    Outcome::Refused(error) => refused(error),
                };
                Ok(answer.to_string().into_bytes())
            }
            "close" => {
                let close: Close = json(payload, "postgres/close")?;
                let mut open = session
                    .postgres
                    .open
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                open.remove(&close.connection);
                Ok(Vec::new())
            }
            other => Err(unknown_operation(
                "postgres",
                other,
                "open, query, execute, close",
            )),
        }
    }

    /// Checks the address, connects, and keeps the connection in the session.
    async fn open(
        &self,
        function: &Deployment,
        session: &Session,
        request: OpenRequest,
        deadline: Instant,
    ) -> Result<u64, GuestError> {
        // Spin's words for an address that does not parse, or names a socket file.
        let config: Config = request
            .address
            .parse()
            .map_err(|e: tokio_postgres::Error| GuestError::Failed(e.to_string()))?;
        let targets = targets(function, &config).await?;
        let tls = tls(request.ca_root.as_deref())?;
        let permit = self.permit(&function.name)?;
        let connected = tokio::time::timeout_at(deadline.into(), connect(&config, &targets, &tls))
            .await
            .map_err(|_| {
                GuestError::Failed("connecting did not finish by the call's deadline".into())
            })?;
        let (client, connection) = connected.map_err(|e| GuestError::Failed(chain(&e)))?;
        // The connection's messages are read by its own task, which ends when the client is
        // dropped (the guest closed it, or the call ended), or at the call's deadline: then
        // it first cancels whatever statement is still running (the server would run it on
        // after the socket closed), then closes the connection.
        let (token, cancel_tls) = (client.cancel_token(), tls.clone());
        tokio::spawn(async move {
            tokio::select! {
                ended = connection => if let Err(e) = ended {
                    tracing::debug!("a PostgreSQL connection ended: {e}");
                },
                () = tokio::time::sleep_until(deadline.into()) => {
                    let cancel = token.cancel_query(cancel_tls);
                    let _ = tokio::time::timeout(CANCEL_TIMEOUT, cancel).await;
                }
            }
        });
        let id = session.postgres.next.fetch_add(1, Ordering::Relaxed) + 1;
        let open = Arc::new(Open {
            client,
            tls,
            _permit: permit,
        });
        let mut connections = session
            .postgres
            .open
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        connections.insert(id, open);
        Ok(id)
    }

    /// One of `function`'s connection slots, or `failed` when all are taken.
    fn permit(&self, function: &FunctionName) -> Result<OwnedSemaphorePermit, GuestError> {
        let semaphore = {
            let mut permits = self.permits.lock().unwrap_or_else(|e| e.into_inner());
            permits
                .entry(function.clone())
                .or_insert_with(|| Arc::new(Semaphore::new(MAX_CONNECTIONS)))
                .clone()
        };
        semaphore.try_acquire_owned().map_err(|_| {
            GuestError::Failed(format!(
                "too many connections: this function holds {MAX_CONNECTIONS} PostgreSQL \
                 connections open, the most it may"
            ))
        })
    }

    /// Forgets a removed function's connection count.
    pub(crate) fn forget(&self, function: &FunctionName) {
        let mut permits = self.permits.lock().unwrap_or_else(|e| e.into_inner());
        permits.remove(function);
    }
}

fn refused(error: DbError) -> serde_json::Value {
    serde_json::json!({ "db_error": error })
}

/// One host of an address, checked: its name (for TLS), port, and the addresses the function
/// may connect to.
#[derive(Debug, PartialEq)]
struct Target {
    host: String,
    port: u16,
    addrs: Vec<IpAddr>,
}

/// Checks every host of `config` as Spin does (the name and port against the allow-list,
/// scheme `postgres`), then resolves each name and keeps the addresses the function may
/// reach, as for outbound HTTP: public ones, and any for a host that is an address the
/// allow-list names, or `localhost` named by it.
async fn targets(function: &Deployment, config: &Config) -> Result<Vec<Target>, GuestError> {
    let rules = &function.config.grants.outbound;
    if !config.get_hostaddrs().is_empty() {
        return Err(GuestError::Denied(
            "`hostaddr` is not supported: give the address as `host`, where the allow-list \
             checks it"
                .into(),
        ));
    }
    let ports = config.get_ports();
    let mut targets = Vec::new();
    for (i, host) in config.get_hosts().iter().enumerate() {
        let name = match host {
            Host::Tcp(name) => name,
            #[cfg(unix)]
            Host::Unix(_) => {
                return Err(GuestError::Failed(
                    "Unix sockets are not supported on WebAssembly".into(),
                ))
            }
        };
        // As libpq: the port at the host's index, or the only one given, or 5432.
        let given = ports
            .get(i)
            .or_else(|| (ports.len() == 1).then(|| &ports[0]))
            .copied();
        let port = given.unwrap_or(5432);
        let host = name.trim_start_matches('[').trim_end_matches(']');
        let lower = host.to_ascii_lowercase();
        if !rules.iter().any(|r| r.allows("postgres", &lower, port)) {
            let port = given.map(|p| format!(":{p}")).unwrap_or_default();
            return Err(GuestError::Denied(format!(
                "address postgres://{name}{port} is not permitted"
            )));
        }
        let addrs = match lower.parse::<IpAddr>() {
            Ok(ip) => vec![ip],
            Err(_) => {
                let named = lower == "localhost"
                    && rules.iter().any(|r| {
                        matches!(&r.host, HostPattern::Name(n) if n == "localhost")
                            && r.allows("postgres", &lower, port)
                    });
                reachable(&lower, port, named).await?
            }
        };
        targets.push(Target {
            host: host.to_owned(),
            port,
            addrs,
        });
    }
    Ok(targets)
}

/// The addresses `host` resolves to that a function may reach: all of them if `named`, else
/// the public ones.
async fn reachable(host: &str, port: u16, named: bool) -> Result<Vec<IpAddr>, GuestError> {
    let mut addrs: Vec<IpAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| GuestError::Failed(format!("cannot resolve {host}: {e}")))?
        .map(|a| a.ip())
        .collect();
    addrs.dedup();
    let (allowed, refused): (Vec<IpAddr>, Vec<IpAddr>) = addrs
        .into_iter()
        .partition(|ip| named || crate::http::is_public(*ip));
    if allowed.is_empty() {
        let shown: Vec<String> = refused.iter().map(IpAddr::to_string).collect();
        return Err(GuestError::Denied(format!(
            "{host} resolves to {}, which this function may not reach: loopback, private and \
             link-local addresses need an allow-list entry naming the address",
            if shown.is_empty() {
                "nothing".into()
            } else {
                shown.join(", ")
            }
        )));
    }
    Ok(allowed)
}

/// Connects to the first target address that answers, host by host in order.
async fn connect(
    config: &Config,
    targets: &[Target],
    tls: &MakeRustlsConnect,
) -> Result<
    (
        Client,
        tokio_postgres::Connection<
            tokio_postgres::Socket,
            <MakeRustlsConnect as MakeTlsConnect<tokio_postgres::Socket>>::Stream,
        >,
    ),
    tokio_postgres::Error,
> {
    let mut last = None;
    for target in targets {
        for addr in &target.addrs {
            match one_address(config, &target.host, *addr, target.port)
                .connect(tls.clone())
                .await
            {
                Ok(connected) => return Ok(connected),
                Err(e) => last = Some(e),
            }
        }
    }
    // No host at all: the client's own error says so.
    match last {
        Some(e) => Err(e),
        None => config.connect(tls.clone()).await,
    }
}

/// `config` for one host at one checked address (`hostaddr`, so the client connects there
/// and nowhere else; the name stays for TLS), with every other setting as given.
fn one_address(config: &Config, host: &str, addr: IpAddr, port: u16) -> Config {
    let mut one = Config::new();
    if let Some(user) = config.get_user() {
        one.user(user);
    }
    if let Some(password) = config.get_password() {
        one.password(password);
    }
    if let Some(dbname) = config.get_dbname() {
        one.dbname(dbname);
    }
    if let Some(options) = config.get_options() {
        one.options(options);
    }
    if let Some(name) = config.get_application_name() {
        one.application_name(name);
    }
    if let Some(timeout) = config.get_connect_timeout() {
        one.connect_timeout(*timeout);
    }
    if let Some(timeout) = config.get_tcp_user_timeout() {
        one.tcp_user_timeout(*timeout);
    }
    if let Some(interval) = config.get_keepalives_interval() {
        one.keepalives_interval(interval);
    }
    if let Some(retries) = config.get_keepalives_retries() {
        one.keepalives_retries(retries);
    }
    one.ssl_mode(config.get_ssl_mode())
        .ssl_negotiation(config.get_ssl_negotiation())
        .keepalives(config.get_keepalives())
        .keepalives_idle(config.get_keepalives_idle())
        .target_session_attrs(config.get_target_session_attrs())
        .channel_binding(config.get_channel_binding())
        .load_balance_hosts(config.get_load_balance_hosts())
        .host(host)
        .hostaddr(addr)
        .port(port);
    one
}

/// The TLS client: the Web PKI roots (as Wafer's outbound HTTP has them), and the guest's
/// root certificate if it gave one. Used when the address asks for TLS (`sslmode=prefer`, the
/// default, or `require`); `sslmode=disable` never uses it.
fn tls(ca_root: Option<&str>) -> Result<MakeRustlsConnect, GuestError> {
    static DEFAULT: OnceLock<Result<MakeRustlsConnect, String>> = OnceLock::new();
    let build = |ca_root: Option<&str>| -> Result<MakeRustlsConnect, String> {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        if let Some(pem) = ca_root {
            use rustls::pki_types::pem::PemObject as _;
            let mut added = 0;
            for cert in rustls::pki_types::CertificateDer::pem_slice_iter(pem.as_bytes()) {
                let cert = cert.map_err(|e| format!("invalid root certificate: {e}"))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("invalid root certificate: {e}"))?;
                added += 1;
            }
            if added == 0 {
                return Err("invalid root certificate: no PEM certificate in it".into());
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(MakeRustlsConnect::new(config))
    };
    match ca_root {
        Some(pem) => build(Some(pem)).map_err(GuestError::Invalid),
        None => DEFAULT
            .get_or_init(|| build(None))
            .clone()
            .map_err(GuestError::Failed),
    }
}

/// Runs `work` on `open` within the call's deadline; past it, or if the call is dropped
/// first (the guest's call ended), asks the server to cancel the statement, which would
/// otherwise run on after its client is gone.
async fn within<T>(
    open: &Open,
    deadline: Instant,
    work: impl std::future::Future<Output = Result<T, GuestError>>,
) -> Result<T, GuestError> {
    let mut running = Running { open, done: false };
    let outcome = tokio::time::timeout_at(deadline.into(), work).await;
    running.done = outcome.is_ok();
    outcome.map_err(|_| {
        GuestError::Failed(
            "the statement was still running at the call's deadline, and was cancelled".into(),
        )
    })?
}

/// A statement in flight: dropped before it is done, it cancels the statement.
struct Running<'a> {
    open: &'a Open,
    done: bool,
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let token = self.open.client.cancel_token();
        let tls = self.open.tls.clone();
        // Dropped outside a runtime only if the runtime itself is going away.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = tokio::time::timeout(CANCEL_TIMEOUT, token.cancel_query(tls)).await;
            });
        }
    }
}

async fn query(
    open: &Open,
    statement: &Statement,
    deadline: Instant,
) -> Result<Outcome<Rows>, GuestError> {
    let parameters = types::to_sql(&statement.parameters)?;
    within(open, deadline, async {
        let prepared = match open.client.prepare(&statement.statement).await {
            Ok(prepared) => prepared,
            Err(e) => return failure(e),
        };
        let columns = prepared.columns().iter().map(column).collect();
        let refs = parameters.iter().map(|p| p.as_ref() as &(dyn ToSql + Sync));
        let rows = match open.client.query_raw(&prepared, refs).await {
            Ok(rows) => rows,
            Err(e) => return failure(e),
        };
        let mut rows = std::pin::pin!(rows);
        let mut answer = Rows {
            columns,
            rows: Vec::new(),
        };
        let mut bytes = 0;
        loop {
            let row: Row = match rows.try_next().await {
                Ok(Some(row)) => row,
                Ok(None) => break,
                Err(e) => return failure(e),
            };
            if answer.rows.len() == MAX_ROWS {
                return Err(GuestError::TooLarge(format!(
                    "query result exceeds the limit of {MAX_ROWS} rows"
                )));
            }
            let values = types::row(&row)?;
            bytes += values.iter().map(PgValue::size).sum::<usize>();
            if bytes > MAX_ANSWER {
                return Err(GuestError::TooLarge(format!(
                    "query result exceeds limit of {MAX_ANSWER} bytes"
                )));
            }
            answer.rows.push(values);
        }
        Ok(Outcome::Done(answer))
    })
    .await
}

async fn execute(
    open: &Open,
    statement: &Statement,
    deadline: Instant,
) -> Result<Outcome<u64>, GuestError> {
    let parameters = types::to_sql(&statement.parameters)?;
    within(open, deadline, async {
        let refs: Vec<&(dyn ToSql + Sync)> = parameters
            .iter()
            .map(|p| p.as_ref() as &(dyn ToSql + Sync))
            .collect();
        match open.client.execute(&statement.statement, &refs).await {
            Ok(n) => Ok(Outcome::Done(n)),
            Err(e) => failure(e),
        }
    })
    .await
}

/// A client error as the guest gets it: the database's own error as an answer, anything
/// else (a value that does not convert, a broken connection) as `failed`, both in Spin's
/// words (the error's debug form).
fn failure<T>(e: tokio_postgres::Error) -> Result<Outcome<T>, GuestError> {
    let text = format!("{e:?}");
    match e.as_db_error() {
        Some(db) => Ok(Outcome::Refused(DbError {
            text,
            severity: db.severity().to_owned(),
            code: db.code().code().to_owned(),
            message: db.message().to_owned(),
            detail: db.detail().map(str::to_owned),
            extras: extras(db),
        })),
        None => Err(GuestError::Failed(text)),
    }
}

/// The error fields Spin's `db-error` carries as `extras`.
fn extras(db: &tokio_postgres::error::DbError) -> Vec<(String, String)> {
    let fields: [(&str, Option<String>); 10] = [
        ("column", db.column().map(str::to_owned)),
        ("constraint", db.constraint().map(str::to_owned)),
        ("routine", db.routine().map(str::to_owned)),
        ("hint", db.hint().map(str::to_owned)),
        ("table", db.table().map(str::to_owned)),
        ("datatype", db.datatype().map(str::to_owned)),
        ("schema", db.schema().map(str::to_owned)),
        ("file", db.file().map(str::to_owned)),
        ("line", db.line().map(|l| l.to_string())),
        ("where_", db.where_().map(str::to_owned)),
    ];
    fields
        .into_iter()
        .filter_map(|(name, value)| Some((name.to_owned(), value?)))
        .collect()
}

/// An error with its causes, for a connection that failed.
fn chain(e: &tokio_postgres::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let line = cause.to_string();
        if !text.contains(&line) {
            text.push_str(": ");
            text.push_str(&line);
        }
        source = cause.source();
    }
    text
}

/// A result's column as the answer names it.
fn column(column: &tokio_postgres::Column) -> Column {
    Column {
        name: column.name().to_owned(),
        data_type: types::data_type(column.type_()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn one_address_keeps_every_setting_of_the_address() {
        let settings = "user=u password=p dbname=d options='-c x=y' application_name=a \
                        sslmode=require connect_timeout=3 keepalives=0 keepalives_idle=7 \
                        target_session_attrs=read-write channel_binding=require";
        let given: Config = format!("host=db.example.com port=6000 {settings}")
            .parse()
            .unwrap();
        let expected: Config =
            format!("host=db.example.com hostaddr=192.0.2.7 port=6000 {settings}")
                .parse()
                .unwrap();
        let one = one_address(&given, "db.example.com", "192.0.2.7".parse().unwrap(), 6000);
        assert_eq!(format!("{one:?}"), format!("{expected:?}"));
        assert_eq!(one.get_password(), Some(&b"p"[..]));
    }
}
