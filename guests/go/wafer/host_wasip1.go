//go:build wasip1

package wafer

import "unsafe"

// The waPC host-call imports. In Go 1.21 to 1.23 a wasmimport function may only
// take 32- and 64-bit integers, floats and unsafe.Pointer, so pointers are
// passed as unsafe.Pointer and lengths as uint32 (wasm i32).

//go:wasmimport wapc __host_call
//go:noescape
func wapcHostCall(bdPtr unsafe.Pointer, bdLen uint32, nsPtr unsafe.Pointer, nsLen uint32,
	opPtr unsafe.Pointer, opLen uint32, ptr unsafe.Pointer, len uint32) uint32

//go:wasmimport wapc __host_response_len
func wapcHostResponseLen() uint32

//go:wasmimport wapc __host_response
//go:noescape
func wapcHostResponse(ptr unsafe.Pointer)

//go:wasmimport wapc __host_error_len
func wapcHostErrorLen() uint32

//go:wasmimport wapc __host_error
//go:noescape
func wapcHostError(ptr unsafe.Pointer)

// hostCall makes one call through the waPC imports.
func hostCall(namespace, operation string, payload []byte) ([]byte, error) {
	ok := wapcHostCall(
		stringPtr(binding), uint32(len(binding)),
		stringPtr(namespace), uint32(len(namespace)),
		stringPtr(operation), uint32(len(operation)),
		bytesPtr(payload), uint32(len(payload)),
	)
	if ok != 1 {
		msg := make([]byte, wapcHostErrorLen())
		if len(msg) == 0 {
			return nil, errorf(CodeFailed, "the host gave no error message for "+namespace+"/"+operation)
		}
		wapcHostError(unsafe.Pointer(&msg[0]))
		return nil, newError(string(msg))
	}
	answer := make([]byte, wapcHostResponseLen())
	if len(answer) > 0 {
		wapcHostResponse(unsafe.Pointer(&answer[0]))
	}
	return answer, nil
}

// stringPtr is the address of the bytes of s (nil when s is empty).
func stringPtr(s string) unsafe.Pointer {
	if s == "" {
		return nil
	}
	return unsafe.Pointer(unsafe.StringData(s))
}

// bytesPtr is the address of the bytes of b (nil when b is empty).
func bytesPtr(b []byte) unsafe.Pointer {
	if len(b) == 0 {
		return nil
	}
	return unsafe.Pointer(&b[0])
}
