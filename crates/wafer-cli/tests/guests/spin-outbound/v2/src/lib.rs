//! A WASI 0.2 Spin component using `fermyon:spin/redis@2.0.0` and `fermyon:spin/mqtt@2.0.0`
//! (the test guest of crates/wafer-cli/tests/spin_outbound.rs).
//!
//! `/.../redis/OP?key=K&value=V...` runs one Redis operation on the server named by the
//! `redis-address` header; `/.../mqtt/publish?topic=T&value=V&qos=Q` publishes to the broker
//! named by `mqtt-address` (with `mqtt-username`, `mqtt-password`). The answer is 200 and
//! the result as text, or 500 and the error as Spin's SDKs print it (`Error::InvalidAddress`).

use wasip2::exports::http::incoming_handler::Guest;
use wasip2::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

wit_bindgen::generate!({
    path: "../../../../../../wit",
    world: "wafer:platform/spin",
    generate_all,
});

use fermyon::spin::mqtt;
use fermyon::spin::redis;

struct Component;

wasip2::http::proxy::export!(Component);

impl Guest for Component {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let (status, body) = match answer(&request) {
            Ok(body) => (200, body),
            Err(Failure(status, body)) => (status, body),
        };
        let response = OutgoingResponse::new(Fields::new());
        let _ = response.set_status_code(status);
        let Ok(outgoing) = response.body() else {
            return;
        };
        ResponseOutparam::set(out, Ok(response));
        if let Ok(stream) = outgoing.write() {
            for chunk in body.as_bytes().chunks(4096) {
                let _ = stream.blocking_write_and_flush(chunk);
            }
        }
        let _ = OutgoingBody::finish(outgoing, None);
    }
}

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

fn answer(request: &IncomingRequest) -> Result<String, Failure> {
    let target = request.path_with_query().unwrap_or_default();
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let mut segments = path.rsplit('/');
    let op = segments.next().unwrap_or_default();
    let kind = segments.next().unwrap_or_default();
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .first()
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_default()
    };
    let arg = |name: &str| param(query, name).unwrap_or_default();
    let list = |name: &str| -> Vec<String> {
        arg(name)
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    };
    match kind {
        "redis" => {
            let connection = redis::Connection::open(&header("redis-address"))?;
            let key = arg("key");
            Ok(match op {
                "open" => "opened".into(),
                "set" => {
                    connection.set(&key, &arg("value").into_bytes())?;
                    "ok".into()
                }
                "get" => match connection.get(&key)? {
                    Some(value) => String::from_utf8_lossy(&value).into_owned(),
                    None => return Err(Failure(404, "nil".into())),
                },
                "incr" => connection.incr(&key)?.to_string(),
                "del" => connection.del(&list("key"))?.to_string(),
                "sadd" => connection.sadd(&key, &list("value"))?.to_string(),
                "srem" => connection.srem(&key, &list("value"))?.to_string(),
                "smembers" => {
                    let mut members = connection.smembers(&key)?;
                    members.sort();
                    members.join(",")
                }
                "publish" => {
                    connection.publish(&arg("channel"), &arg("value").into_bytes())?;
                    "ok".into()
                }
                "execute" => {
                    let arguments: Vec<redis::RedisParameter> = list("args")
                        .into_iter()
                        .map(|a| match a.strip_prefix('#').and_then(|n| n.parse().ok()) {
                            Some(n) => redis::RedisParameter::Int64(n),
                            None => redis::RedisParameter::Binary(a.into_bytes()),
                        })
                        .collect();
                    let results = connection.execute(&arg("command"), &arguments)?;
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
                &header("mqtt-address"),
                &header("mqtt-username"),
                &header("mqtt-password"),
                30,
            )?;
            let qos = match arg("qos").as_str() {
                "0" => mqtt::Qos::AtMostOnce,
                "2" => mqtt::Qos::ExactlyOnce,
                _ => mqtt::Qos::AtLeastOnce,
            };
            if op == "publish" {
                connection.publish(&arg("topic"), &arg("value").into_bytes(), qos)?;
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
