package wafer

import (
	"encoding/base64"
	"encoding/json"
	"unicode/utf8"
)

// putBytes puts b in obj as the string field when b is UTF-8, else base64 as
// field+"_base64", the two spellings every payload with bytes accepts.
func putBytes(obj map[string]any, field string, b []byte) {
	if utf8.Valid(b) {
		obj[field] = string(b)
	} else {
		obj[field+"_base64"] = base64.StdEncoding.EncodeToString(b)
	}
}

// takeBytes is the inverse of putBytes: the bytes of an answer given as text or
// as base64 (nil if neither).
func takeBytes(text, encoded *string) ([]byte, error) {
	switch {
	case text != nil:
		return []byte(*text), nil
	case encoded != nil:
		return base64.StdEncoding.DecodeString(*encoded)
	default:
		return nil, nil
	}
}

// marshal encodes a payload. Payloads are maps of strings, numbers and string
// pairs, which always encode.
func marshal(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic("wafer: encoding a payload: " + err.Error())
	}
	return b
}
