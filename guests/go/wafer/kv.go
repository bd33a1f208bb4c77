package wafer

import "encoding/json"

// The key-value store is private to the function and needs its `kv = true`
// grant. Keys are non-empty UTF-8 of up to 1024 bytes; values are any bytes up
// to the kv_value limit.

// KVGet returns the value stored under key, or an error with code
// [CodeNotFound] (see [IsNotFound]) if there is none.
func KVGet(key string) ([]byte, error) {
	return HostCall("kv", "get", []byte(key))
}

// KVSet stores value under key. The value is on disk when KVSet returns.
func KVSet(key string, value []byte) error {
	_, err := HostCall("kv", "set", kvSetPayload(key, value))
	return err
}

// KVDelete deletes key. Deleting a key that does not exist is not an error.
func KVDelete(key string) error {
	_, err := HostCall("kv", "delete", []byte(key))
	return err
}

// KVList returns the keys that start with prefix, sorted; an empty prefix lists
// every key.
func KVList(prefix string) ([]string, error) {
	answer, err := HostCall("kv", "list", []byte(prefix))
	if err != nil {
		return nil, err
	}
	var keys []string
	if err := json.Unmarshal(answer, &keys); err != nil {
		return nil, errorf(CodeFailed, "kv/list answered with something other than a JSON array of keys: "+err.Error())
	}
	return keys, nil
}

// kvSetPayload is the kv/set payload: {"key": K, "value": ...} or "value_base64".
func kvSetPayload(key string, value []byte) []byte {
	obj := map[string]any{"key": key}
	putBytes(obj, "value", value)
	return marshal(obj)
}
