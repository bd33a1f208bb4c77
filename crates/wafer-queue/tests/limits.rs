//! The local queue's limits: its byte budget and its attempt cap.
#![allow(clippy::unwrap_used)]

use bytes::Bytes;
use wafer_queue::{Invocation, LocalQueue, Outcome, Queue, QueueConfig, QueueError, State};

const MIB: usize = 1 << 20;

fn invocation(path: &str) -> Invocation {
    Invocation::new("f".parse().unwrap(), "POST", path, Vec::new(), None)
}

fn done(body: Bytes) -> Outcome {
    Outcome {
        state: State::Done,
        status: 200,
        headers: Vec::new(),
        error: None,
        body,
    }
}

fn config(max_bytes: u64) -> QueueConfig {
    QueueConfig {
        max_bytes,
        ..QueueConfig::default()
    }
}

/// Runs the next queued invocation to completion with `result`.
async fn run_next(queue: &LocalQueue, result: Bytes) -> String {
    let job = queue.next().await.unwrap();
    queue.start(&job).await.unwrap();
    queue.finish(&job, done(result)).await.unwrap();
    job.invocation.id
}

#[tokio::test]
async fn bodies_past_the_byte_budget_are_refused_until_space_comes_back() {
    let dir = tempfile::tempdir().unwrap();
    let max = 4 * MIB as u64 + 64 * 1024;
    let queue = LocalQueue::open_with(dir.path(), config(max)).unwrap();
    let body = Bytes::from(vec![7u8; MIB]);
    let mut accepted = 0;
    let refusal = loop {
        match queue.enqueue(invocation("/big"), body.clone()).await {
            Ok(()) => accepted += 1,
            Err(e) => break e,
        }
        assert!(accepted <= 4, "more than the budget was accepted");
    };
    assert_eq!(accepted, 4);
    let QueueError::NoSpace { size, max_bytes } = refusal else {
        panic!("expected NoSpace, got {refusal}");
    };
    assert_eq!(max_bytes, max);
    assert!(size > MIB as u64, "{size}");
    let message = refusal.to_string();
    assert!(message.contains(&max.to_string()), "{message}");
    assert!(message.contains("--async-max-bytes"), "{message}");
    assert!(queue.bytes().await.unwrap() <= max);
    // A refused invocation leaves no trace.
    assert_eq!(queue.depth().await.unwrap(), 4);
    assert_eq!(queue.list(10).await.unwrap().len(), 4);

    // Two run (small results): their bodies' space comes back.
    run_next(&queue, Bytes::from_static(b"ok")).await;
    run_next(&queue, Bytes::from_static(b"ok")).await;
    queue
        .enqueue(invocation("/big"), body.clone())
        .await
        .unwrap();
    queue
        .enqueue(invocation("/big"), body.clone())
        .await
        .unwrap();
    assert!(matches!(
        queue.enqueue(invocation("/big"), body.clone()).await,
        Err(QueueError::NoSpace { .. })
    ));

    // The count survives a restart.
    let held = queue.bytes().await.unwrap();
    drop(queue);
    let queue = LocalQueue::open_with(dir.path(), config(max)).unwrap();
    assert_eq!(queue.bytes().await.unwrap(), held);
    assert!(matches!(
        queue.enqueue(invocation("/big"), body.clone()).await,
        Err(QueueError::NoSpace { .. })
    ));
    // A body larger than the whole budget is refused outright.
    let huge = Bytes::from(vec![0u8; 5 * MIB]);
    let empty = LocalQueue::open_with(tempfile::tempdir().unwrap().path(), config(max)).unwrap();
    assert!(matches!(
        empty.enqueue(invocation("/huge"), huge).await,
        Err(QueueError::NoSpace { .. })
    ));
}

#[tokio::test]
async fn kept_results_count_and_the_oldest_give_way() {
    let dir = tempfile::tempdir().unwrap();
    let max = 4 * MIB as u64 + 64 * 1024;
    let queue = LocalQueue::open_with(dir.path(), config(max)).unwrap();
    let result = Bytes::from(vec![1u8; MIB]);
    let mut ids = Vec::new();
    for _ in 0..6 {
        queue.enqueue(invocation("/r"), Bytes::new()).await.unwrap();
        ids.push(run_next(&queue, result.clone()).await);
        assert!(queue.bytes().await.unwrap() <= max);
    }
    // The newest results are kept, the oldest were forgotten to stay within the budget.
    let newest = ids.last().unwrap();
    assert_eq!(queue.result(newest).await.unwrap().unwrap(), result);
    assert!(queue.get(&ids[0]).await.unwrap().is_none());
    assert!(queue.result(&ids[0]).await.unwrap().is_none());
    // Results never keep new work out: a new 1 MiB body still fits, by forgetting more.
    queue
        .enqueue(invocation("/after"), Bytes::from(vec![2u8; MIB]))
        .await
        .unwrap();
    assert!(queue.bytes().await.unwrap() <= max);
    assert_eq!(queue.result(newest).await.unwrap().unwrap(), result);
}

#[tokio::test]
async fn an_invocation_that_never_finishes_is_given_up_after_the_attempt_cap() {
    let dir = tempfile::tempdir().unwrap();
    let crashing = invocation("/crash");
    let config = QueueConfig {
        max_attempts: 3,
        ..QueueConfig::default()
    };
    {
        let queue = LocalQueue::open_with(dir.path(), config).unwrap();
        queue
            .enqueue(crashing.clone(), Bytes::from_static(b"x"))
            .await
            .unwrap();
    }
    // Each "server" takes the job, starts it and dies mid-run.
    for attempt in 1..=3 {
        let queue = LocalQueue::open_with(dir.path(), config).unwrap();
        let job = queue.next().await.unwrap();
        assert_eq!(job.invocation.id, crashing.id);
        assert_eq!(job.attempt, attempt);
        queue.start(&job).await.unwrap();
    }
    let queue = LocalQueue::open_with(dir.path(), config).unwrap();
    let record = queue.get(&crashing.id).await.unwrap().unwrap();
    assert_eq!(record.state, State::Queued);
    // The next start would be the fourth: the queue records it failed instead, and hands
    // out the next invocation.
    let after = invocation("/after");
    queue.enqueue(after.clone(), Bytes::new()).await.unwrap();
    let job = queue.next().await.unwrap();
    assert_eq!(job.invocation.id, after.id);
    let record = queue.get(&crashing.id).await.unwrap().unwrap();
    assert_eq!(record.state, State::Failed);
    assert_eq!(record.attempts, 3);
    let error = record.outcome.unwrap().error.unwrap();
    assert!(error.contains("gave up after 3 attempts"), "{error}");
    assert_eq!(queue.depth().await.unwrap(), 1);
}
