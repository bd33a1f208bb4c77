//! A WASI 0.3 Spin component using `spin:redis/redis@3.0.0` and `spin:mqtt/mqtt@3.0.0`
//! through the official Spin Rust SDK 7 (the test guest of
//! crates/wafer-cli/tests/spin_outbound.rs). The same routes and answers as the WASI 0.2
//! guest beside it (../v2).

use bytes::Bytes;
use spin_sdk::http::{FullBody, IntoResponse, Request, Response};
use spin_sdk::http_service;
use spin_sdk::{mqtt, redis};

type Body = FullBody<Bytes>;

struct Failure(u16, String);

impl From<redis::Error> for Failure {
    fn from(e: redis::Error) -> Self {
        Failure(500, format!("{e:?}"))
    }
}

impl From<mqtt::Error> for Failure {
    fn from(e: mqtt::Error) -> Self {
        Failure(500, format!("{e:?}"))
    }
}

#[http_service]
async fn handle(req: Request) -> anyhow::Result<impl IntoResponse> {
    let (status, body) = match answer(&req).await {
        Ok(body) => (200, body),
        Err(Failure(status, body)) => (status, body),
    };
    Ok(Response::builder()
        .status(status)
        .body(Body::new(Bytes::from(body)))?)
}

async fn answer(req: &Request) -> Result<String, Failure> {
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    let mut segments = path.rsplit('/');
    let op = segments.next().unwrap_or_default();
    let kind = segments.next().unwrap_or_default();
    let header = |name: &str| {
        req.headers()
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .unwrap_or_default()
    };
    let arg = |name: &str| param(&query, name).unwrap_or_default();
    let list = |name: &str| -> Vec<String> {
        arg(name)
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    };
    match kind {
        "redis" => {
            let connection = redis::Connection::open(header("redis-address")).await?;
            let key = arg("key");
            Ok(match op {
                "open" => "opened".into(),
                "set" => {
                    connection.set(&key, arg("value")).await?;
                    "ok".into()
                }
                "get" => match connection.get(&key).await? {
                    Some(value) => String::from_utf8_lossy(&value).into_owned(),
                    None => return Err(Failure(404, "nil".into())),
                },
                "incr" => connection.incr(&key).await?.to_string(),
                "del" => connection.del(list("key")).await?.to_string(),
                "sadd" => connection.sadd(&key, list("value")).await?.to_string(),
                "srem" => connection.srem(&key, list("value")).await?.to_string(),
                "smembers" => {
                    let mut members = connection.smembers(&key).await?;
                    members.sort();
                    members.join(",")
                }
                "publish" => {
                    connection.publish(arg("channel"), arg("value")).await?;
                    "ok".into()
                }
                "execute" => {
                    let arguments = list("args").into_iter().map(|a| {
                        match a.strip_prefix('#').and_then(|n| n.parse().ok()) {
                            Some(n) => redis::RedisParameter::Int64(n),
                            None => redis::RedisParameter::Binary(a.into_bytes()),
                        }
                    });
                    let results = connection.execute(arg("command"), arguments).await?;
                    let shown: Vec<String> = results
                        .into_iter()
                        .map(|r| match r {
                            redis::RedisResult::Nil => "nil".into(),
                            redis::RedisResult::Status(s) => format!("status:{s}"),
                            redis::RedisResult::Int64(n) => format!("int:{n}"),
                            redis::RedisResult::Binary(b) => {
                                format!("bin:{}", String::from_utf8_lossy(&b))
                            }
                        })
                        .collect();
                    shown.join(",")
                }
                other => return Err(Failure(404, format!("no redis operation {other}"))),
            })
        }
        "mqtt" => {
            let connection = mqtt::Connection::open(
                header("mqtt-address"),
                header("mqtt-username"),
                header("mqtt-password"),
                30,
            )
            .await?;
            let qos = match arg("qos").as_str() {
                "0" => mqtt::Qos::AtMostOnce,
                "2" => mqtt::Qos::ExactlyOnce,
                _ => mqtt::Qos::AtLeastOnce,
            };
            if op == "publish" {
                let value = arg("value").into_bytes();
                connection.publish(arg("topic"), value, qos).await?;
            }
            Ok("ok".into())
        }
        _ => Err(Failure(404, format!("not found: {path}"))),
    }
}

/// The first value of the query parameter `name`, percent-decoded.
fn param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then(|| decode(v))
    })
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
