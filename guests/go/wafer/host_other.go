//go:build !wasip1

package wafer

// hostCall outside Wafer: there is no host, so every call fails.
func hostCall(namespace, operation string, payload []byte) ([]byte, error) {
	return nil, errorf(CodeFailed, "not running inside Wafer")
}
