package wafer

import (
	"errors"
	"strings"
)

// The error codes a host call can fail with; see [Error].
const (
	// CodeDenied: the function was not granted this (a host or topic not on its
	// list, no key-value store).
	CodeDenied = "denied"
	// CodeNotFound: the key or config value does not exist.
	CodeNotFound = "not_found"
	// CodeInvalid: the payload is malformed (bad JSON, missing field, bad URL,
	// unknown operation).
	CodeInvalid = "invalid"
	// CodeTooLarge: a key, value or response is over its limit.
	CodeTooLarge = "too_large"
	// CodeFailed: the host tried and failed (connection refused, timeout, storage
	// error). The SDK also uses it for answers it cannot decode.
	CodeFailed = "failed"
)

// Error is a failed host call.
type Error struct {
	// Code is the code word the host's message starts with, one of the Code*
	// constants (a future host may add others). A message without a code word
	// gets CodeFailed.
	Code string
	// Message is the host's whole message, code word included, for example
	// "not_found: no config value or secret named greeting".
	Message string
}

// Error returns the host's message verbatim.
func (e *Error) Error() string { return e.Message }

// newError makes an *Error from a host error message, taking the code from the
// "code: " it starts with.
func newError(message string) *Error {
	code, _, found := strings.Cut(message, ": ")
	if !found || !isCodeWord(code) {
		code = CodeFailed
	}
	return &Error{Code: code, Message: message}
}

// errorf makes an *Error raised by the SDK itself, in the host's format.
func errorf(code, text string) *Error {
	return &Error{Code: code, Message: code + ": " + text}
}

// isCodeWord reports whether s looks like a code word: lower-case letters and _.
func isCodeWord(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if (c < 'a' || c > 'z') && c != '_' {
			return false
		}
	}
	return true
}

// ErrorCode returns the code of err if it is (or wraps) an [*Error], else "".
func ErrorCode(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}

// IsNotFound reports whether err is (or wraps) an [*Error] with code
// [CodeNotFound]: a key or config value that does not exist.
func IsNotFound(err error) bool { return ErrorCode(err) == CodeNotFound }

// IsDenied reports whether err is (or wraps) an [*Error] with code
// [CodeDenied]: something the function was not granted.
func IsDenied(err error) bool { return ErrorCode(err) == CodeDenied }
