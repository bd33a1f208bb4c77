package wafer

// Publish publishes msg to topic, a dot-separated name such as
// "telemetry.cpu". The topic must match one of the function's `publish`
// patterns, or the error has code [CodeDenied].
func Publish(topic string, msg []byte) error {
	_, err := HostCall("pubsub", "publish", publishPayload(topic, msg))
	return err
}

// publishPayload is the pubsub/publish payload: {"topic": T, "message": ...} or
// "message_base64".
func publishPayload(topic string, msg []byte) []byte {
	obj := map[string]any{"topic": topic}
	putBytes(obj, "message", msg)
	return marshal(obj)
}
