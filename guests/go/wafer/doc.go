// Package wafer is the guest SDK for Go functions running on Wafer, built with
// GOOS=wasip1 GOARCH=wasm.
//
// A Wafer function reaches every host capability through one channel, the waPC
// import __host_call (module "wapc", binding "wafer"); see docs/host-calls.md.
// This package wraps that channel: [HostCall] is the raw call, and the rest of the
// package covers each namespace:
//
//   - log: [Log], [LogDebug], [LogInfo], [LogWarn], [LogError]
//   - config: [Config] (config values and secrets)
//   - kv: [KVGet], [KVSet], [KVDelete], [KVList]
//   - pubsub: [Publish]
//   - http: [Fetch], [Get]
//
// plus helpers for CGI functions: [Query], [QueryRaw] and [Body].
//
// A call that fails returns an [*Error] whose Code says why ([CodeDenied],
// [CodeNotFound], [CodeInvalid], [CodeTooLarge], [CodeFailed]) and whose Error
// method returns the host's message verbatim. A capability the function was not
// granted is such an error; it never traps.
//
// Outside Wafer (for example in native unit tests) the package compiles, and
// every call fails with "failed: not running inside Wafer".
//
// # Example
//
// A CGI function that counts its visits:
//
//	package main
//
//	import (
//		"fmt"
//		"strconv"
//
//		"wafer.dev/guest/wafer"
//	)
//
//	func main() {
//		greeting, err := wafer.Config("greeting")
//		if err != nil {
//			greeting = "hello" // not granted, or not set
//		}
//		n := 0
//		if raw, err := wafer.KVGet("visits"); err == nil {
//			n, _ = strconv.Atoi(string(raw))
//		} else if !wafer.IsNotFound(err) {
//			wafer.LogError(err.Error())
//		}
//		n++
//		if err := wafer.KVSet("visits", []byte(strconv.Itoa(n))); err != nil {
//			wafer.LogError(err.Error())
//		}
//		wafer.LogInfo(fmt.Sprintf("visit %d", n))
//		fmt.Printf("Content-Type: text/plain\n\n%s, visit %d\n", greeting, n)
//	}
package wafer
