package wafer

import (
	"encoding/json"
	"strings"
)

// Request is an outbound HTTP request for [Fetch].
type Request struct {
	// Method is the HTTP method; empty means GET.
	Method string
	// URL is the absolute URL. Its host must be on the function's `http`
	// allow-list, or Fetch fails with code [CodeDenied].
	URL string
	// Headers are the request's headers as name/value pairs, in order.
	Headers [][2]string
	// Body is the request body; nil or empty sends none.
	Body []byte
}

// Response is the answer to a [Request].
type Response struct {
	// Status is the HTTP status code.
	Status int
	// Headers are the response's headers as name/value pairs, in order.
	Headers [][2]string
	// Body is the whole response body.
	Body []byte
}

// Header returns the value of the first header called name (compared without
// regard to case), or "" if there is none.
func (r *Response) Header(name string) string {
	for _, h := range r.Headers {
		if strings.EqualFold(h[0], name) {
			return h[1]
		}
	}
	return ""
}

// Fetch sends req and returns the response. Any HTTP status, 404 or 500
// included, is a response, not an error; errors are for requests that were not
// allowed ([CodeDenied]), malformed ([CodeInvalid]), too large ([CodeTooLarge])
// or did not complete ([CodeFailed]: connection refused, timeout). Redirects
// are followed by the host.
func Fetch(req Request) (*Response, error) {
	answer, err := HostCall("http", "request", requestPayload(req))
	if err != nil {
		return nil, err
	}
	return parseResponse(answer)
}

// Get fetches url with a GET request.
func Get(url string) (*Response, error) {
	return Fetch(Request{Method: "GET", URL: url})
}

// requestPayload is the http/request payload for req.
func requestPayload(req Request) []byte {
	obj := map[string]any{"url": req.URL}
	if req.Method != "" {
		obj["method"] = req.Method
	}
	if len(req.Headers) > 0 {
		obj["headers"] = req.Headers
	}
	if len(req.Body) > 0 {
		putBytes(obj, "body", req.Body)
	}
	return marshal(obj)
}

// parseResponse decodes the http/request answer.
func parseResponse(answer []byte) (*Response, error) {
	var wire struct {
		Status     int         `json:"status"`
		Headers    [][2]string `json:"headers"`
		Body       *string     `json:"body"`
		BodyBase64 *string     `json:"body_base64"`
	}
	if err := json.Unmarshal(answer, &wire); err != nil {
		return nil, errorf(CodeFailed, "http/request answered with malformed JSON: "+err.Error())
	}
	body, err := takeBytes(wire.Body, wire.BodyBase64)
	if err != nil {
		return nil, errorf(CodeFailed, "http/request answered with a body_base64 that is not base64: "+err.Error())
	}
	if body == nil {
		body = []byte{}
	}
	return &Response{Status: wire.Status, Headers: wire.Headers, Body: body}, nil
}
