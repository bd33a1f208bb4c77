package wafer

// binding is the waPC binding every Wafer host call uses.
const binding = "wafer"

// transport performs one host call. It is the wasm import inside Wafer and a
// stub that always fails elsewhere; tests replace it with a fake host.
var transport = hostCall

// HostCall calls operation in namespace with payload and returns the host's
// answer. It is the raw channel under every other function of this package; see
// docs/host-calls.md for the namespaces, operations and payload formats.
//
// A failed call returns an [*Error]. The answer to a successful call is never
// nil, though it may be empty.
func HostCall(namespace, operation string, payload []byte) ([]byte, error) {
	return transport(namespace, operation, payload)
}
