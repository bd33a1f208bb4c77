package wafer

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"reflect"
	"runtime"
	"testing"
)

// call is one host call as the fake host saw it.
type call struct {
	namespace, operation string
	payload              string
}

// fakeHost replaces the transport for one test: it records each call and
// answers with reply.
func fakeHost(t *testing.T, reply func(c call) ([]byte, error)) *[]call {
	t.Helper()
	var calls []call
	saved := transport
	transport = func(namespace, operation string, payload []byte) ([]byte, error) {
		c := call{namespace, operation, string(payload)}
		calls = append(calls, c)
		return reply(c)
	}
	t.Cleanup(func() { transport = saved })
	return &calls
}

// answer is a fake host that always answers with the given text.
func answer(text string) func(call) ([]byte, error) {
	return func(call) ([]byte, error) { return []byte(text), nil }
}

// fail is a fake host that always fails with the given message.
func fail(message string) func(call) ([]byte, error) {
	return func(call) ([]byte, error) { return nil, newError(message) }
}

// sameJSON fails the test unless got and want encode the same JSON value.
func sameJSON(t *testing.T, got, want string) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal([]byte(got), &g); err != nil {
		t.Fatalf("payload %s is not JSON: %v", got, err)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("bad want %s: %v", want, err)
	}
	if !reflect.DeepEqual(g, w) {
		t.Errorf("payload %s, want %s", got, want)
	}
}

func TestErrorParsesTheCode(t *testing.T) {
	for _, tc := range []struct{ message, code string }{
		{"not_found: no config value or secret named greeting", CodeNotFound},
		{"denied: example.com is not on this function's allow-list", CodeDenied},
		{"too_large: the value is over the kv_value limit", CodeTooLarge},
		{"something went wrong", CodeFailed},
		{"Oops: capital code word", CodeFailed},
		{"", CodeFailed},
	} {
		err := newError(tc.message)
		if err.Code != tc.code || err.Error() != tc.message {
			t.Errorf("newError(%q) = {%q, %q}, want code %q and the message verbatim",
				tc.message, err.Code, err.Error(), tc.code)
		}
	}
}

func TestIsNotFoundAndIsDenied(t *testing.T) {
	notFound := fmt.Errorf("reading: %w", newError("not_found: no key x"))
	denied := newError("denied: no key-value store")
	if !IsNotFound(notFound) || IsDenied(notFound) {
		t.Error("a wrapped not_found error is not recognised")
	}
	if !IsDenied(denied) || IsNotFound(denied) {
		t.Error("a denied error is not recognised")
	}
	if IsNotFound(errors.New("not_found: a plain error")) || IsNotFound(nil) {
		t.Error("an error that is not an *Error counts as not_found")
	}
}

func TestNotInsideWafer(t *testing.T) {
	_, err := HostCall("config", "get", []byte("x"))
	var e *Error
	if runtime.GOOS == "wasip1" {
		// Built for WASI (go test -exec "wafer run ..."), the host is real and grants nothing.
		if !errors.As(err, &e) || e.Code != CodeDenied {
			t.Errorf("HostCall under wafer run: %v", err)
		}
		return
	}
	if !errors.As(err, &e) || e.Code != CodeFailed || e.Message != "failed: not running inside Wafer" {
		t.Errorf("HostCall outside Wafer: %v", err)
	}
}

func TestLog(t *testing.T) {
	calls := fakeHost(t, answer(""))
	LogInfo("visit 3")
	LogError("boom")
	want := []call{{"log", "info", "visit 3"}, {"log", "error", "boom"}}
	if !reflect.DeepEqual(*calls, want) {
		t.Errorf("calls %v, want %v", *calls, want)
	}
}

func TestConfig(t *testing.T) {
	calls := fakeHost(t, answer("hi"))
	if v, err := Config("greeting"); v != "hi" || err != nil {
		t.Errorf("Config = %q, %v", v, err)
	}
	if want := (call{"config", "get", "greeting"}); (*calls)[0] != want {
		t.Errorf("call %v, want %v", (*calls)[0], want)
	}

	fakeHost(t, fail("not_found: no config value or secret named greeting"))
	if _, err := Config("greeting"); !IsNotFound(err) {
		t.Errorf("Config of a missing name: %v", err)
	}
}

func TestKVSetPayload(t *testing.T) {
	sameJSON(t, string(kvSetPayload("visits", []byte("7"))), `{"key":"visits","value":"7"}`)
	sameJSON(t, string(kvSetPayload("e", nil)), `{"key":"e","value":""}`)
	sameJSON(t, string(kvSetPayload(`b"<`, []byte{0, 0xff})), `{"key":"b\"<","value_base64":"AP8="}`)
}

func TestKV(t *testing.T) {
	calls := fakeHost(t, func(c call) ([]byte, error) {
		switch c.operation {
		case "get":
			return nil, newError("not_found: no key " + c.payload)
		case "list":
			return []byte(`["a/1","a/2"]`), nil
		}
		return []byte{}, nil
	})
	if _, err := KVGet("visits"); !IsNotFound(err) || err.Error() != "not_found: no key visits" {
		t.Errorf("KVGet: %v", err)
	}
	if err := KVSet("visits", []byte("1")); err != nil {
		t.Errorf("KVSet: %v", err)
	}
	if err := KVDelete("visits"); err != nil {
		t.Errorf("KVDelete: %v", err)
	}
	if keys, err := KVList("a/"); err != nil || !reflect.DeepEqual(keys, []string{"a/1", "a/2"}) {
		t.Errorf("KVList = %v, %v", keys, err)
	}
	want := []call{
		{"kv", "get", "visits"},
		{"kv", "set", `{"key":"visits","value":"1"}`},
		{"kv", "delete", "visits"},
		{"kv", "list", "a/"},
	}
	if !reflect.DeepEqual(*calls, want) {
		t.Errorf("calls %v, want %v", *calls, want)
	}

	fakeHost(t, answer("not json"))
	if _, err := KVList(""); ErrorCode(err) != CodeFailed {
		t.Errorf("KVList of a malformed answer: %v", err)
	}
}

func TestPublishPayload(t *testing.T) {
	sameJSON(t, string(publishPayload("a.b", []byte("hi"))), `{"topic":"a.b","message":"hi"}`)
	sameJSON(t, string(publishPayload("a.b", []byte{0x80})), `{"topic":"a.b","message_base64":"gA=="}`)
}

func TestPublish(t *testing.T) {
	calls := fakeHost(t, fail("denied: topic x is not on this function's publish list"))
	if err := Publish("x", []byte("m")); !IsDenied(err) {
		t.Errorf("Publish: %v", err)
	}
	if (*calls)[0].namespace != "pubsub" || (*calls)[0].operation != "publish" {
		t.Errorf("call %v", (*calls)[0])
	}
}

func TestRequestPayload(t *testing.T) {
	sameJSON(t, string(requestPayload(Request{URL: "https://a.example/"})), `{"url":"https://a.example/"}`)
	sameJSON(t, string(requestPayload(Request{
		Method:  "POST",
		URL:     "https://a.example/x",
		Headers: [][2]string{{"content-type", "text/plain"}, {"x-a", "1"}},
		Body:    []byte("hello"),
	})), `{"method":"POST","url":"https://a.example/x","headers":[["content-type","text/plain"],["x-a","1"]],"body":"hello"}`)
	sameJSON(t, string(requestPayload(Request{Method: "PUT", URL: "u", Body: []byte{0x80, 1}})),
		`{"method":"PUT","url":"u","body_base64":"gAE="}`)
}

func TestParseResponse(t *testing.T) {
	r, err := parseResponse([]byte(`{"status":404,"headers":[["Content-Type","text/plain"]],"body":"nope"}`))
	if err != nil {
		t.Fatal(err)
	}
	want := &Response{Status: 404, Headers: [][2]string{{"Content-Type", "text/plain"}}, Body: []byte("nope")}
	if !reflect.DeepEqual(r, want) {
		t.Errorf("got %+v, want %+v", r, want)
	}
	if r.Header("content-type") != "text/plain" || r.Header("x-missing") != "" {
		t.Errorf("Header lookup is wrong")
	}

	r, err = parseResponse([]byte(`{"status":200,"headers":[],"body_base64":"/wA="}`))
	if err != nil || !reflect.DeepEqual(r.Body, []byte{0xff, 0}) {
		t.Errorf("binary body: %+v, %v", r, err)
	}
	r, err = parseResponse([]byte(`{"status":204,"headers":[]}`))
	if err != nil || r.Body == nil || len(r.Body) != 0 {
		t.Errorf("no body: %+v, %v", r, err)
	}

	for _, bad := range []string{`{"status":200,"body_base64":"!"}`, `[]`, ``} {
		if _, err := parseResponse([]byte(bad)); ErrorCode(err) != CodeFailed {
			t.Errorf("parseResponse(%q): %v, want a failed error", bad, err)
		}
	}
}

func TestFetch(t *testing.T) {
	calls := fakeHost(t, answer(`{"status":200,"headers":[],"body":"ok"}`))
	r, err := Get("https://a.example/")
	if err != nil || r.Status != 200 || string(r.Body) != "ok" {
		t.Errorf("Get = %+v, %v", r, err)
	}
	if want := (call{"http", "request", `{"method":"GET","url":"https://a.example/"}`}); (*calls)[0] != want {
		t.Errorf("call %v, want %v", (*calls)[0], want)
	}

	fakeHost(t, fail("failed: connection refused"))
	if _, err := Fetch(Request{URL: "http://127.0.0.1:1/"}); err == nil || err.Error() != "failed: connection refused" {
		t.Errorf("Fetch of a refused connection: %v", err)
	}
}

func TestQuery(t *testing.T) {
	t.Setenv("QUERY_STRING", "a=1&b=x+y&c=%41&fetch=http://h/p?q=1%20")
	q := Query()
	if q.Get("a") != "1" || q.Get("b") != "x y" || q.Get("c") != "A" {
		t.Errorf("Query() = %v", q)
	}
	for _, tc := range []struct {
		name, value string
		ok          bool
	}{
		{"fetch", "http://h/p?q=1%20", true},
		{"b", "x+y", true},
		{"d", "", false},
	} {
		if v, ok := QueryRaw(tc.name); v != tc.value || ok != tc.ok {
			t.Errorf("QueryRaw(%q) = %q, %v, want %q, %v", tc.name, v, ok, tc.value, tc.ok)
		}
	}
	if v, ok := queryRaw("flag&x=1", "flag"); v != "" || !ok {
		t.Errorf("a pair without = : %q, %v", v, ok)
	}
}

// go test runs a package's tests in its directory; under wafer run that takes
// --dir=/ and --env PWD=$PWD (docs/sdk-go.md).
func TestTheTestsRunInThePackageDirectory(t *testing.T) {
	text, err := os.ReadFile("testdata/greeting.txt")
	if err != nil || string(text) != "read from the package directory\n" {
		t.Errorf("testdata/greeting.txt: %q, %v", text, err)
	}
}
