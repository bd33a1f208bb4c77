//! [`LocalQueue`]: the queue of one machine, in a redb database in the data directory
//! (`invocations.redb`). Every change is one committed (fsynced) transaction, so a `kill -9`
//! loses nothing that was acknowledged: an invocation taken out of the queue and not
//! finished when the server stopped is queued again, in its old place, when it starts.
//!
//! The bytes held (records, request bodies, results) are counted in the same transactions
//! that change them, so the count survives restarts exactly; so do the attempts, counted in
//! the record when a call starts.

use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use redb::{
    Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition,
    WriteTransaction,
};
use tokio::sync::Notify;

use crate::{
    callback_wait, now, Callback, Invocation, Job, Outcome, Queue, QueueConfig, QueueError, Record,
    Skip, State, CALLBACK_TRIES, MAX_QUEUED, RETAIN,
};

/// Every invocation's record (JSON), by id.
const RECORDS: TableDefinition<&str, &str> = TableDefinition::new("records");
/// Request bodies of the invocations not finished yet.
const BODIES: TableDefinition<&str, &[u8]> = TableDefinition::new("bodies");
/// Response bodies of the finished ones.
const RESULTS: TableDefinition<&str, &[u8]> = TableDefinition::new("results");
/// The queued ids, in the order they run.
const QUEUE: TableDefinition<u64, &str> = TableDefinition::new("queue");
/// The ids taken out of the queue and not finished, with their place in it.
const TAKEN: TableDefinition<&str, u64> = TableDefinition::new("taken");
/// The finished ids (oldest first, as ids sort by time), with when they finished: what
/// the retention sweep and the byte budget forget, without reading the unfinished ones.
const FINISHED: TableDefinition<&str, u64> = TableDefinition::new("finished");
/// Finished invocations whose result is still to be posted to their callback URL: when the
/// next try is due (ms since the epoch), how many tries were made, and the URL.
const CALLBACKS: TableDefinition<&str, (u64, u32, &str)> = TableDefinition::new("callbacks");
/// Counters: [`BYTES`].
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// The bytes held in `records`, `bodies` and `results`.
const BYTES: &str = "bytes";

/// How often finished records past [`RETAIN`] are swept.
const SWEEP: Duration = Duration::from_secs(600);

/// The redb queue: see the module docs.
pub struct LocalQueue {
    db: Arc<Database>,
    config: QueueConfig,
    next_key: Arc<AtomicU64>,
    ready: Notify,
    swept: Mutex<Instant>,
    /// Callbacks being posted (handed out and not done): not handed out twice.
    posting: Arc<Mutex<HashSet<String>>>,
    callbacks: Notify,
}

impl LocalQueue {
    /// Enqueues `invocation` in one transaction; with `once`, not if its id is known
    /// already (then `false`).
    async fn put(
        &self,
        invocation: Invocation,
        body: Bytes,
        once: bool,
    ) -> Result<bool, QueueError> {
        let next_key = self.next_key.clone();
        let max_bytes = self.config.max_bytes;
        let added = self
            .blocking(move |db| {
                let tx = db.begin_write().map_err(QueueError::store)?;
                {
                    if once {
                        let records = tx.open_table(RECORDS).map_err(QueueError::store)?;
                        if read_record(&records, &invocation.id)?.is_some() {
                            return Ok(false);
                        }
                    }
                    let mut queue = tx.open_table(QUEUE).map_err(QueueError::store)?;

                    let waiting = queue.len().map_err(QueueError::store)?;
                    if waiting >= MAX_QUEUED {
                        return Err(QueueError::Full(waiting));
                    }
                    let id = invocation.id.clone();
                    let record = Record::queued(invocation);
                    let mut records = tx.open_table(RECORDS).map_err(QueueError::store)?;
                    let mut size = write_record(&mut records, &record)?;
                    let mut bodies = tx.open_table(BODIES).map_err(QueueError::store)?;
                    size += len(body.len());
                    bodies
                        .insert(id.as_str(), &body[..])
                        .map_err(QueueError::store)?;
                    let key = next_key.fetch_add(1, Ordering::Relaxed);
                    queue.insert(key, id.as_str()).map_err(QueueError::store)?;
                    drop((records, bodies));
                    let held = charge(&tx, size)?;
                    // A refusal drops the transaction: nothing is forgotten for nothing.
                    if make_room(&tx, held, max_bytes, None)? > max_bytes {
                        return Err(QueueError::NoSpace {
                            size: size.max(0) as u64,
                            max_bytes,
                        });
                    }
                }
                tx.commit().map_err(QueueError::store)?;
                Ok(true)
            })
            .await?;
        if added {
            self.ready.notify_one();
        }
        Ok(added)
    }

    /// Opens (or creates) `data/invocations.redb` with the default [`QueueConfig`].
    pub fn open(data: &Path) -> Result<Self, QueueError> {
        Self::open_with(data, QueueConfig::default())
    }

    /// Opens (or creates) `data/invocations.redb` with the limits of `config`;
    /// invocations a stopped server had taken and not finished are queued again, in their
    /// old places.
    pub fn open_with(data: &Path, config: QueueConfig) -> Result<Self, QueueError> {
        let path = data.join("invocations.redb");
        let failed = |e: &dyn std::fmt::Display| {
            QueueError::Store(format!("cannot open {}: {e}", path.display()))
        };
        // Request headers, bodies and results: the owner's only. Created 0600 and handed to
        // redb, so never readable by others even for a moment; an older one is tightened.
        let mut options = std::fs::OpenOptions::new();
        options.read(true).write(true).create(true).truncate(false);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let file = options.open(&path).map_err(|e| failed(&e))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            file.set_permissions(std::fs::Permissions::from_mode(0o600))
                .map_err(|e| failed(&e))?;
        }
        let db = Database::builder()
            .create_file(file)
            .map_err(|e| failed(&e))?;
        let next_key = recover(&db)?;
        prune(&db)?;
        Ok(Self {
            db: Arc::new(db),
            config,
            next_key: Arc::new(AtomicU64::new(next_key)),
            ready: Notify::new(),
            swept: Mutex::new(Instant::now()),
            posting: Arc::default(),
            callbacks: Notify::new(),
        })
    }

    /// The bytes the queue holds: records, request bodies and kept results.
    pub async fn bytes(&self) -> Result<u64, QueueError> {
        self.blocking(|db| {
            let tx = db.begin_read().map_err(QueueError::store)?;
            let meta = tx.open_table(META).map_err(QueueError::store)?;
            Ok(meta
                .get(BYTES)
                .map_err(QueueError::store)?
                .map_or(0, |v| v.value()))
        })
        .await
    }

    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Database) -> Result<T, QueueError> + Send + 'static,
    ) -> Result<T, QueueError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || work(&db))
            .await
            .map_err(QueueError::store)?
    }
}

/// The byte count of `tx`, changed by `delta`.
fn charge(tx: &WriteTransaction, delta: i64) -> Result<u64, QueueError> {
    let mut meta = tx.open_table(META).map_err(QueueError::store)?;
    let held = meta
        .get(BYTES)
        .map_err(QueueError::store)?
        .map_or(0, |v| v.value());
    let held = held.saturating_add_signed(delta);
    meta.insert(BYTES, held).map_err(QueueError::store)?;
    Ok(held)
}

fn len(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Queues again what was taken and not finished, counts the bytes held if a database
/// written before they were counted, and returns the key for the next new invocation.
fn recover(db: &Database) -> Result<u64, QueueError> {
    let tx = db.begin_write().map_err(QueueError::store)?;
    let next = {
        let mut records = tx.open_table(RECORDS).map_err(QueueError::store)?;
        let mut queue = tx.open_table(QUEUE).map_err(QueueError::store)?;
        let mut taken = tx.open_table(TAKEN).map_err(QueueError::store)?;
        let bodies = tx.open_table(BODIES).map_err(QueueError::store)?;
        let results = tx.open_table(RESULTS).map_err(QueueError::store)?;
        let mut finished = tx.open_table(FINISHED).map_err(QueueError::store)?;
        let mut meta = tx.open_table(META).map_err(QueueError::store)?;
        // Created here, so that reading it never finds it missing.
        tx.open_table(CALLBACKS).map_err(QueueError::store)?;
        if meta.get(BYTES).map_err(QueueError::store)?.is_none() {
            let mut held = 0u64;
            for entry in records.iter().map_err(QueueError::store)? {
                let (id, json) = entry.map_err(QueueError::store)?;
                held += json.value().len() as u64;
                let record: Record =
                    serde_json::from_str(json.value()).map_err(QueueError::store)?;
                if let Some(at) = record.finished {
                    finished.insert(id.value(), at).map_err(QueueError::store)?;
                }
            }
            for entry in bodies.iter().map_err(QueueError::store)? {
                held += entry.map_err(QueueError::store)?.1.value().len() as u64;
            }
            for entry in results.iter().map_err(QueueError::store)? {
                held += entry.map_err(QueueError::store)?.1.value().len() as u64;
            }
            meta.insert(BYTES, held).map_err(QueueError::store)?;
        }
        let mut interrupted = Vec::new();
        for entry in taken.iter().map_err(QueueError::store)? {
            let (id, key) = entry.map_err(QueueError::store)?;
            interrupted.push((id.value().to_owned(), key.value()));
        }
        let mut delta = 0;
        for (id, key) in &interrupted {
            if let Some(mut record) = read_record(&records, id)? {
                record.state = State::Queued;
                delta += write_record(&mut records, &record)?;
                queue.insert(*key, id.as_str()).map_err(QueueError::store)?;
            }
            taken.remove(id.as_str()).map_err(QueueError::store)?;
        }
        if delta != 0 {
            let held = meta
                .get(BYTES)
                .map_err(QueueError::store)?
                .map_or(0, |v| v.value());
            meta.insert(BYTES, held.saturating_add_signed(delta))
                .map_err(QueueError::store)?;
        }
        if !interrupted.is_empty() {
            tracing::warn!(
                "{} asynchronous invocations had not finished when the server stopped; they run again",
                interrupted.len()
            );
        }
        let last = queue
            .last()
            .map_err(QueueError::store)?
            .map(|(k, _)| k.value());
        let last_taken = interrupted.iter().map(|(_, key)| *key).max();
        last.max(last_taken).map_or(0, |k| k + 1)
    };
    tx.commit().map_err(QueueError::store)?;
    Ok(next)
}

/// Deletes finished records (and results) created more than [`RETAIN`] ago.
fn prune(db: &Database) -> Result<(), QueueError> {
    let cutoff = format!("{:012x}", now().saturating_sub(RETAIN.as_millis() as u64));
    let tx = db.begin_write().map_err(QueueError::store)?;
    let old = {
        let finished = tx.open_table(FINISHED).map_err(QueueError::store)?;
        let mut old = Vec::new();
        for entry in finished
            .range(..cutoff.as_str())
            .map_err(QueueError::store)?
        {
            old.push(entry.map_err(QueueError::store)?.0.value().to_owned());
        }
        old
    };
    let mut freed = 0;
    for id in &old {
        freed += forget(&tx, id)?;
    }
    charge(&tx, -len(freed as usize))?;
    tx.commit().map_err(QueueError::store)
}

/// Deletes finished invocation `id` (record and result); returns the bytes freed.
fn forget(tx: &WriteTransaction, id: &str) -> Result<u64, QueueError> {
    let mut records = tx.open_table(RECORDS).map_err(QueueError::store)?;
    let mut results = tx.open_table(RESULTS).map_err(QueueError::store)?;
    let mut finished = tx.open_table(FINISHED).map_err(QueueError::store)?;
    let mut freed = 0;
    if let Some(json) = records.remove(id).map_err(QueueError::store)? {
        freed += json.value().len() as u64;
    }
    if let Some(body) = results.remove(id).map_err(QueueError::store)? {
        freed += body.value().len() as u64;
    }
    finished.remove(id).map_err(QueueError::store)?;
    Ok(freed)
}

/// Forgets the oldest finished invocations (never `keep`) until the queue holds at most
/// `max` bytes or none is left; returns what it then holds.
fn make_room(
    tx: &WriteTransaction,
    mut held: u64,
    max: u64,
    keep: Option<&str>,
) -> Result<u64, QueueError> {
    if held <= max {
        return Ok(held);
    }
    let mut forgotten = 0u64;
    loop {
        let oldest: Vec<String> = {
            let finished = tx.open_table(FINISHED).map_err(QueueError::store)?;
            let mut oldest = Vec::new();
            for entry in finished.iter().map_err(QueueError::store)? {
                let id = entry.map_err(QueueError::store)?.0.value().to_owned();
                if Some(id.as_str()) != keep {
                    oldest.push(id);
                }
                if oldest.len() == 64 {
                    break;
                }
            }
            oldest
        };
        if oldest.is_empty() {
            break;
        }
        for id in oldest {
            held = held.saturating_sub(forget(tx, &id)?);
            forgotten += 1;
            if held <= max {
                break;
            }
        }
        if held <= max {
            break;
        }
    }
    if forgotten > 0 {
        tracing::info!(
            "forgot the {forgotten} oldest finished asynchronous invocations early to stay \
             within the queue's budget of {max} bytes (--async-max-bytes)"
        );
    }
    let mut meta = tx.open_table(META).map_err(QueueError::store)?;
    meta.insert(BYTES, held).map_err(QueueError::store)?;
    Ok(held)
}

/// Writes `record`; returns by how many bytes the stored records grew.
fn write_record(
    records: &mut redb::Table<&'static str, &'static str>,
    record: &Record,
) -> Result<i64, QueueError> {
    let json = serde_json::to_string(record).map_err(QueueError::store)?;
    let id = record.invocation.id.as_str();
    let old = records
        .insert(id, json.as_str())
        .map_err(QueueError::store)?
        .map_or(0, |old| old.value().len());
    Ok(len(json.len()) - len(old))
}

fn read_record(
    records: &impl ReadableTable<&'static str, &'static str>,
    id: &str,
) -> Result<Option<Record>, QueueError> {
    match records.get(id).map_err(QueueError::store)? {
        Some(json) => serde_json::from_str(json.value())
            .map(Some)
            .map_err(QueueError::store),
        None => Ok(None),
    }
}

/// Records how `id` went and takes it out of the queue: its request body goes, its result
/// is kept. Returns by how many bytes the queue grew.
fn record_finish(tx: &WriteTransaction, id: &str, outcome: Outcome) -> Result<i64, QueueError> {
    let mut records = tx.open_table(RECORDS).map_err(QueueError::store)?;
    let Some(mut record) = read_record(&records, id)? else {
        return Ok(0);
    };
    let finished_at = now();
    record.state = outcome.state;
    record.finished = Some(finished_at);
    let mut delta = 0;
    let mut results = tx.open_table(RESULTS).map_err(QueueError::store)?;
    delta += len(outcome.body.len());
    if let Some(old) = results
        .insert(id, &outcome.body[..])
        .map_err(QueueError::store)?
    {
        delta -= len(old.value().len());
    }
    record.outcome = Some(outcome);
    delta += write_record(&mut records, &record)?;
    if let Some(url) = &record.invocation.callback {
        let mut callbacks = tx.open_table(CALLBACKS).map_err(QueueError::store)?;
        callbacks
            .insert(id, (finished_at, 0, url.as_str()))
            .map_err(QueueError::store)?;
    }
    let mut bodies = tx.open_table(BODIES).map_err(QueueError::store)?;
    if let Some(body) = bodies.remove(id).map_err(QueueError::store)? {
        delta -= len(body.value().len());
    }
    let mut taken = tx.open_table(TAKEN).map_err(QueueError::store)?;
    taken.remove(id).map_err(QueueError::store)?;
    let mut finished = tx.open_table(FINISHED).map_err(QueueError::store)?;
    finished
        .insert(id, finished_at)
        .map_err(QueueError::store)?;
    Ok(delta)
}

#[async_trait]
impl Queue for LocalQueue {
    async fn depth(&self) -> Result<u64, QueueError> {
        self.blocking(|db| {
            let tx = db.begin_read().map_err(QueueError::store)?;
            let queued = tx.open_table(QUEUE).map_err(QueueError::store)?;
            let taken = tx.open_table(TAKEN).map_err(QueueError::store)?;
            Ok(
                queued.len().map_err(QueueError::store)?
                    + taken.len().map_err(QueueError::store)?,
            )
        })
        .await
    }

    async fn enqueue(&self, invocation: Invocation, body: Bytes) -> Result<(), QueueError> {
        self.put(invocation, body, false).await.map(drop)
    }

    async fn enqueue_once(&self, invocation: Invocation, body: Bytes) -> Result<bool, QueueError> {
        self.put(invocation, body, true).await
    }

    async fn next_except(&self, skip: Skip) -> Result<Job, QueueError> {
        let max_attempts = self.config.max_attempts;
        loop {
            let skip = skip.clone();
            let taken = self
                .blocking(move |db| {
                    let tx = db.begin_write().map_err(QueueError::store)?;
                    let mut given_up = 0;
                    // Passed over (their functions skipped): queued ids from this place on.
                    let mut after = 0;
                    let job = loop {
                        let found = {
                            let queue = tx.open_table(QUEUE).map_err(QueueError::store)?;
                            let records = tx.open_table(RECORDS).map_err(QueueError::store)?;
                            let mut found = None;
                            for entry in queue.range(after..).map_err(QueueError::store)? {
                                let (key, id) = entry.map_err(QueueError::store)?;
                                let (key, id) = (key.value(), id.value().to_owned());
                                let Some(record) = read_record(&records, &id)? else {
                                    return Err(QueueError::Store(format!(
                                        "queued invocation {id} (at {key}) has no record"
                                    )));
                                };
                                if !skip(&record.invocation.function) {
                                    found = Some((key, id, record));
                                    break;
                                }
                            }
                            found
                        };
                        let Some((key, id, record)) = found else {
                            break None;
                        };
                        after = key + 1;
                        tx.open_table(QUEUE)
                            .map_err(QueueError::store)?
                            .remove(key)
                            .map_err(QueueError::store)?;
                        if record.attempts >= max_attempts {
                            // Started that many times and never finished: each start may
                            // have taken the server down with it.
                            tracing::error!(
                                id,
                                function = %record.invocation.function,
                                "asynchronous invocation given up after {} attempts",
                                record.attempts
                            );
                            let outcome = QueueConfig::gave_up(record.attempts);
                            let delta = record_finish(&tx, &id, outcome)?;
                            charge(&tx, delta)?;
                            given_up += 1;
                            continue;
                        }
                        let mut taken = tx.open_table(TAKEN).map_err(QueueError::store)?;
                        taken.insert(id.as_str(), key).map_err(QueueError::store)?;
                        let bodies = tx.open_table(BODIES).map_err(QueueError::store)?;
                        let body = bodies
                            .get(id.as_str())
                            .map_err(QueueError::store)?
                            .map(|b| Bytes::copy_from_slice(b.value()))
                            .unwrap_or_default();
                        break Some(Job {
                            invocation: record.invocation,
                            body,
                            attempt: record.attempts + 1,
                            lease: key,
                        });
                    };
                    if job.is_some() || given_up > 0 {
                        tx.commit().map_err(QueueError::store)?;
                    }
                    Ok((job, given_up))
                })
                .await?;
            let (taken, given_up) = taken;
            if given_up > 0 {
                self.callbacks.notify_one();
            }
            match taken {
                Some(job) => return Ok(job),
                // `notify_one` leaves a permit when no one waits, so an enqueue between
                // the empty read and this wait is not missed.
                None => self.ready.notified().await,
            }
        }
    }

    fn resume(&self) {
        self.ready.notify_one();
    }

    async fn start(&self, job: &Job) -> Result<(), QueueError> {
        let id = job.invocation.id.clone();
        self.blocking(move |db| {
            let tx = db.begin_write().map_err(QueueError::store)?;
            {
                let mut records = tx.open_table(RECORDS).map_err(QueueError::store)?;
                let Some(mut record) = read_record(&records, &id)? else {
                    return Ok(());
                };
                record.state = State::Running;
                record.attempts += 1;
                record.started = Some(now());
                let delta = write_record(&mut records, &record)?;
                drop(records);
                charge(&tx, delta)?;
            }
            tx.commit().map_err(QueueError::store)
        })
        .await
    }

    async fn finish(&self, job: &Job, outcome: Outcome) -> Result<(), QueueError> {
        let id = job.invocation.id.clone();
        let max_bytes = self.config.max_bytes;
        self.blocking(move |db| {
            let tx = db.begin_write().map_err(QueueError::store)?;
            let delta = record_finish(&tx, &id, outcome)?;
            let held = charge(&tx, delta)?;
            // A result is always kept; older ones give way if the budget is exceeded.
            make_room(&tx, held, max_bytes, Some(&id))?;
            tx.commit().map_err(QueueError::store)
        })
        .await?;
        self.callbacks.notify_one();
        let sweep = {
            let mut swept = self.swept.lock().unwrap_or_else(|e| e.into_inner());
            let due = swept.elapsed() > SWEEP;
            if due {
                *swept = Instant::now();
            }
            due
        };
        if sweep {
            self.blocking(prune).await?;
        }
        Ok(())
    }

    async fn next_callback(&self) -> Result<Callback, QueueError> {
        loop {
            let posting = self.posting.clone();
            // The callback due first among those not being posted, and when it is due.
            let first = self
                .blocking(move |db| {
                    let tx = db.begin_read().map_err(QueueError::store)?;
                    let callbacks = tx.open_table(CALLBACKS).map_err(QueueError::store)?;
                    let posting = posting.lock().unwrap_or_else(|e| e.into_inner());
                    let mut first: Option<(u64, u32, String, String)> = None;
                    for entry in callbacks.iter().map_err(QueueError::store)? {
                        let (id, value) = entry.map_err(QueueError::store)?;
                        let (due, tries, url) = value.value();
                        if posting.contains(id.value())
                            || first.as_ref().is_some_and(|f| f.0 <= due)
                        {
                            continue;
                        }
                        first = Some((due, tries, id.value().to_owned(), url.to_owned()));
                    }
                    Ok(first)
                })
                .await?;
            let Some((due, tries, id, url)) = first else {
                self.callbacks.notified().await;
                continue;
            };
            let wait = Duration::from_millis(due.saturating_sub(now()));
            if !wait.is_zero() {
                // A callback finished meanwhile may be due sooner.
                let _ = tokio::time::timeout(wait, self.callbacks.notified()).await;
                continue;
            }
            let mut posting = self.posting.lock().unwrap_or_else(|e| e.into_inner());
            if posting.insert(id.clone()) {
                return Ok(Callback {
                    id,
                    url,
                    attempt: tries + 1,
                    lease: 0,
                });
            }
        }
    }

    async fn callback_done(&self, callback: &Callback, posted: bool) -> Result<(), QueueError> {
        let Callback {
            id, url, attempt, ..
        } = callback.clone();
        let written = self
            .blocking(move |db| {
                let tx = db.begin_write().map_err(QueueError::store)?;
                {
                    let mut callbacks = tx.open_table(CALLBACKS).map_err(QueueError::store)?;
                    if posted || attempt >= CALLBACK_TRIES {
                        callbacks.remove(id.as_str()).map_err(QueueError::store)?;
                    } else {
                        let due = now() + callback_wait(attempt).as_millis() as u64;
                        callbacks
                            .insert(id.as_str(), (due, attempt, url.as_str()))
                            .map_err(QueueError::store)?;
                    }
                }
                tx.commit().map_err(QueueError::store)
            })
            .await;
        self.posting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&callback.id);
        self.callbacks.notify_one();
        written
    }

    async fn get(&self, id: &str) -> Result<Option<Record>, QueueError> {
        let id = id.to_owned();
        self.blocking(move |db| {
            let tx = db.begin_read().map_err(QueueError::store)?;
            let records = tx.open_table(RECORDS).map_err(QueueError::store)?;
            read_record(&records, &id)
        })
        .await
    }

    async fn result(&self, id: &str) -> Result<Option<Bytes>, QueueError> {
        let id = id.to_owned();
        self.blocking(move |db| {
            let tx = db.begin_read().map_err(QueueError::store)?;
            let results = tx.open_table(RESULTS).map_err(QueueError::store)?;
            let body = results.get(id.as_str()).map_err(QueueError::store)?;
            Ok(body.map(|b| Bytes::copy_from_slice(b.value())))
        })
        .await
    }

    async fn list(&self, limit: usize) -> Result<Vec<Record>, QueueError> {
        self.blocking(move |db| {
            let tx = db.begin_read().map_err(QueueError::store)?;
            let records = tx.open_table(RECORDS).map_err(QueueError::store)?;
            let mut newest = Vec::new();
            for entry in records.iter().map_err(QueueError::store)?.rev().take(limit) {
                let (_, json) = entry.map_err(QueueError::store)?;
                newest.push(serde_json::from_str(json.value()).map_err(QueueError::store)?);
            }
            Ok(newest)
        })
        .await
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn invocation(path: &str) -> Invocation {
        Invocation::new("f".parse().unwrap(), "POST", path, Vec::new(), None)
    }

    fn done(body: &'static str) -> Outcome {
        Outcome {
            state: State::Done,
            status: 200,
            headers: vec![("content-type".into(), "text/plain".into())],
            error: None,
            body: Bytes::from_static(body.as_bytes()),
        }
    }

    #[tokio::test]
    async fn runs_in_order_and_keeps_the_outcome() {
        let dir = tempfile::tempdir().unwrap();
        let queue = LocalQueue::open(dir.path()).unwrap();
        let (a, b) = (invocation("/a"), invocation("/b"));
        queue.enqueue(a.clone(), "1".into()).await.unwrap();
        queue.enqueue(b.clone(), "2".into()).await.unwrap();
        let job = queue.next().await.unwrap();
        assert_eq!(
            (job.invocation.path.as_str(), &job.body[..], job.attempt),
            ("/a", &b"1"[..], 1)
        );
        assert_eq!(
            queue.get(&a.id).await.unwrap().unwrap().state,
            State::Queued
        );
        queue.start(&job).await.unwrap();
        assert_eq!(
            queue.get(&a.id).await.unwrap().unwrap().state,
            State::Running
        );
        queue.finish(&job, done("answer")).await.unwrap();
        let record = queue.get(&a.id).await.unwrap().unwrap();
        assert_eq!(record.state, State::Done);
        assert_eq!(record.outcome.unwrap().status, 200);
        assert_eq!(&queue.result(&a.id).await.unwrap().unwrap()[..], b"answer");
        assert_eq!(queue.next().await.unwrap().invocation.id, b.id);
        let listed: Vec<String> = queue
            .list(10)
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.invocation.path)
            .collect();
        assert_eq!(listed, ["/b", "/a"], "newest first");
        assert!(queue.get("nope").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn what_was_running_runs_again_first_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b, c) = (invocation("/a"), invocation("/b"), invocation("/c"));
        {
            let queue = LocalQueue::open(dir.path()).unwrap();
            for i in [&a, &b, &c] {
                queue.enqueue(i.clone(), Bytes::new()).await.unwrap();
            }
            // a and b are taken, a starts; the server stops before either finishes.
            queue.start(&queue.next().await.unwrap()).await.unwrap();
            queue.next().await.unwrap();
        }
        let queue = LocalQueue::open(dir.path()).unwrap();
        let mut order = Vec::new();
        for _ in 0..3 {
            let job = queue.next().await.unwrap();
            order.push((job.invocation.path.clone(), job.attempt));
            queue.start(&job).await.unwrap();
            queue.finish(&job, done("")).await.unwrap();
        }
        let expected = [
            ("/a".to_owned(), 2),
            ("/b".to_owned(), 1),
            ("/c".to_owned(), 1),
        ];
        assert_eq!(order, expected);
    }

    #[tokio::test]
    async fn next_waits_for_an_enqueue() {
        let dir = tempfile::tempdir().unwrap();
        let queue = Arc::new(LocalQueue::open(dir.path()).unwrap());
        let waiting = tokio::spawn({
            let queue = queue.clone();
            async move { queue.next().await.unwrap().invocation.path }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished());
        queue
            .enqueue(invocation("/late"), Bytes::new())
            .await
            .unwrap();
        assert_eq!(waiting.await.unwrap(), "/late");
    }

    #[tokio::test]
    async fn a_callback_waits_for_its_invocation_and_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let queue = LocalQueue::open(dir.path()).unwrap();
        // A fresh queue has none: it waits (it does not fail).
        let none = tokio::time::timeout(Duration::from_millis(100), queue.next_callback()).await;
        assert!(none.is_err(), "{none:?}");
        let mut call = invocation("/hook");
        call.callback = Some("http://hooks.internal/x".into());
        queue.enqueue(call.clone(), Bytes::new()).await.unwrap();
        let job = queue.next().await.unwrap();
        queue.start(&job).await.unwrap();
        let done = Outcome {
            state: State::Done,
            status: 200,
            headers: Vec::new(),
            error: None,
            body: Bytes::from_static(b"ok"),
        };
        queue.finish(&job, done).await.unwrap();
        let first = queue.next_callback().await.unwrap();
        assert_eq!((first.id.as_str(), first.attempt), (call.id.as_str(), 1));
        queue.callback_done(&first, false).await.unwrap();
        drop(queue);
        // Not posted yet: kept across a restart, one try more, due after its wait.
        let queue = LocalQueue::open(dir.path()).unwrap();
        let again = tokio::time::timeout(Duration::from_secs(5), queue.next_callback())
            .await
            .unwrap()
            .unwrap();
        assert_eq!((again.id.as_str(), again.attempt), (call.id.as_str(), 2));
        queue.callback_done(&again, true).await.unwrap();
        let none = tokio::time::timeout(Duration::from_millis(1500), queue.next_callback()).await;
        assert!(none.is_err(), "a posted callback came out again");
    }
}
