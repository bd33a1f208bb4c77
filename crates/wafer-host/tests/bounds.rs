//! Bounds of the host capabilities, from the guest's side: the outbound `Host` header, wildcard
//! rules and addresses, the in-process pub/sub queue in bytes, and the key-value file's mode.
//! Real sockets and a real bus; the subscriber that never finishes stands for a stuck function.
#![allow(clippy::unwrap_used)]

use std::future::Future;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use wafer_host::pubsub::{MAX_MESSAGE, QUEUE_BYTES};
use wafer_host::{Bus, Capabilities, Deliver, Delivery, GuestError, LocalBus, Message};
use wafer_registry::{Deployment, FunctionConfig, FunctionName};
use wafer_runtime::HostCall;

/// An HTTP server on 127.0.0.1 that answers every request with the `Host` header it got.
fn host_echo() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut hosts = Vec::new();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some((name, value)) = line.split_once(':') {
                    if name.eq_ignore_ascii_case("host") {
                        hosts.push(value.trim().to_owned());
                    }
                }
            }
            let body = hosts.join(",");
            let reply = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(reply.as_bytes());
        }
    });
    port
}

fn function(rules: &[String]) -> Deployment {
    let mut config = FunctionConfig::default();
    config.grants.http = rules.iter().map(|r| r.parse().unwrap()).collect();
    Deployment::of("f".parse().unwrap(), config)
}

async fn request(
    caps: &Capabilities,
    function: &Deployment,
    request: serde_json::Value,
) -> Result<serde_json::Value, GuestError> {
    let payload = request.to_string();
    let call = HostCall {
        binding: "wafer",
        namespace: "http",
        operation: "request",
        payload: payload.as_bytes(),
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let answer = caps
        .call(function, &wafer_host::Session::default(), call, deadline, 0)
        .await?;
    Ok(serde_json::from_slice(&answer).unwrap())
}

/// Reported: a core module's request carried its own `Host`, reaching another virtual host
/// on an allowed address.
#[tokio::test]
async fn a_guest_host_header_never_reaches_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let caps = Capabilities::open(dir.path()).unwrap();
    let port = host_echo();
    let function = function(&[format!("http://127.0.0.1:{port}")]);
    let url = format!("http://127.0.0.1:{port}/");
    for host in ["Host", "host", "HOST"] {
        let answer = request(
            &caps,
            &function,
            serde_json::json!({
                "url": url,
                "headers": [[host, "internal.example"], ["x-other", "kept"]],
            }),
        )
        .await
        .unwrap();
        assert_eq!(answer["status"], 200, "{answer}");
        assert_eq!(answer["body"], format!("127.0.0.1:{port}"), "{answer}");
    }
}

/// Reported: the rule `*.0.0.1` allowed the address 127.0.0.1.
#[tokio::test]
async fn a_wildcard_rule_does_not_allow_an_address() {
    let dir = tempfile::tempdir().unwrap();
    let caps = Capabilities::open(dir.path()).unwrap();
    let port = host_echo();
    let url = format!("http://127.0.0.1:{port}/");
    let wild = function(&["*.0.0.1:*".to_owned()]);
    let refused = request(&caps, &wild, serde_json::json!({ "url": url }))
        .await
        .unwrap_err();
    assert_eq!(
        refused.to_string(),
        format!("denied: http://127.0.0.1:{port} is not on this function's allow-list")
    );
    // The rule naming the address allows it.
    let named = function(&[format!("127.0.0.1:{port}")]);
    let answer = request(&caps, &named, serde_json::json!({ "url": url }))
        .await
        .unwrap();
    assert_eq!(answer["status"], 200, "{answer}");
}

/// Subscribers: `stuck` is never done with a delivery, the others at once.
struct Subscribers;

impl Deliver for Subscribers {
    fn subscribers(&self, _topic: &str) -> Vec<FunctionName> {
        Vec::new()
    }

    fn deliver(
        self: Arc<Self>,
        function: FunctionName,
        _message: Message,
    ) -> Pin<Box<dyn Future<Output = Delivery> + Send>> {
        Box::pin(async move {
            if function.as_str() == "stuck" {
                std::future::pending::<()>().await;
            }
            Delivery::Delivered
        })
    }
}

/// Reported: a stuck subscriber could hold 1024 messages of 1 MiB each.
#[tokio::test]
async fn a_subscriber_queue_is_bounded_in_bytes() {
    let bus = LocalBus::default();
    let deliver: Arc<dyn Deliver> = Arc::new(Subscribers);
    bus.set_deliver(Arc::downgrade(&deliver) as Weak<dyn Deliver>);
    let (stuck, quick): (FunctionName, FunctionName) =
        ("stuck".parse().unwrap(), "quick".parse().unwrap());
    let message = Message {
        topic: "big".into(),
        body: vec![b'x'; MAX_MESSAGE].into(),
        hops: 1,
        trace: Vec::new(),
    };
    // The one being delivered counts, with those waiting.
    for _ in 0..QUEUE_BYTES / MAX_MESSAGE {
        let subscribers = vec![stuck.clone(), quick.clone()];
        bus.publish(subscribers, message.clone()).await.unwrap();
    }
    // `quick` takes its messages as they come (on this one thread, once the test yields).
    let delivered = |stats: &wafer_host::pubsub::Stats, name: &str| {
        stats
            .subscribers
            .iter()
            .find(|s| s.function == name)
            .map_or(0, |s| s.delivered)
    };
    for _ in 0..10_000 {
        if delivered(&bus.stats().await, "quick") == 16 {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(delivered(&bus.stats().await, "quick"), 16);
    let refused = bus
        .publish(vec![stuck.clone(), quick.clone()], message.clone())
        .await
        .unwrap_err();
    assert_eq!(
        refused.to_string(),
        "too_large: the message of 1048576 bytes was not queued for `stuck` (16777216 bytes \
         waiting): a subscriber's queue holds at most 16777216 bytes (16 MiB) of messages; it \
         was queued for 1 other subscriber(s)"
    );
    // Small messages still fit, for the others and below the bound.
    let small = Message {
        body: vec![b'x'; 10].into(),
        ..message
    };
    bus.publish(vec![quick.clone()], small.clone())
        .await
        .unwrap();
    assert!(bus.publish(vec![stuck.clone()], small).await.is_err());
    let stats = bus.stats().await;
    let of = |name: &str| {
        stats
            .subscribers
            .iter()
            .find(|s| s.function == name)
            .unwrap()
            .clone()
    };
    assert_eq!(of("stuck").dropped, 2, "{stats:?}");
    assert_eq!(of("quick").dropped, 0, "{stats:?}");
    // Forgetting the subscriber frees its place.
    bus.forget(&stuck).await.unwrap();
    let subscribers = vec![stuck.clone()];
    let small = Message {
        topic: "big".into(),
        body: vec![b'x'; 10].into(),
        hops: 1,
        trace: Vec::new(),
    };
    bus.publish(subscribers, small).await.unwrap();
}

#[cfg(unix)]
#[test]
fn the_key_value_file_is_the_owners_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kv.redb");
    let mode = || std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    drop(Capabilities::open(dir.path()).unwrap());
    assert_eq!(mode(), 0o600);
    // One an older version left readable is tightened.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    drop(Capabilities::open(dir.path()).unwrap());
    assert_eq!(mode(), 0o600);
}
