//! Publishing to topics, granted with `publish = ["pattern", ...]`.

use crate::Error;

/// Publishes `message` to `topic` (dot-separated words, such as `telemetry.cpu`). The message
/// is sent as text when it is UTF-8, otherwise as base64; subscribers get the same bytes.
pub fn publish(topic: &str, message: impl AsRef<[u8]>) -> Result<(), Error> {
    crate::host_call("pubsub", "publish", &payload(topic, message.as_ref())).map(drop)
}

fn payload(topic: &str, message: &[u8]) -> Vec<u8> {
    let mut payload = serde_json::json!({ "topic": topic });
    crate::put_bytes(&mut payload, "message", message);
    payload.to_string().into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_or_base64_message() {
        let json = |p: Vec<u8>| serde_json::from_slice::<serde_json::Value>(&p).unwrap();
        let text = serde_json::json!({"topic": "a.b", "message": "hi"});
        assert_eq!(json(payload("a.b", b"hi")), text);
        let binary = serde_json::json!({"topic": "a.b", "message_base64": "gA=="});
        assert_eq!(json(payload("a.b", &[0x80])), binary);
    }
}
