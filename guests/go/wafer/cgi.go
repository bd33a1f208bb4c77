package wafer

import (
	"io"
	"net/url"
	"os"
	"strings"
)

// Query returns the parameters of the request's query string (QUERY_STRING),
// form-decoded ("+" and %XX). Malformed pairs are skipped.
func Query() url.Values {
	values, _ := url.ParseQuery(os.Getenv("QUERY_STRING"))
	return values
}

// Body reads the whole request body, which a CGI function gets on stdin. It
// can be read once.
func Body() ([]byte, error) {
	return io.ReadAll(os.Stdin)
}

// QueryRaw returns the value of the first name=value pair in QUERY_STRING
// verbatim, without decoding, up to the next "&". ok is false if there is no
// such pair; a pair without "=" has the value "".
func QueryRaw(name string) (value string, ok bool) {
	return queryRaw(os.Getenv("QUERY_STRING"), name)
}

// queryRaw is QueryRaw on the query string query.
func queryRaw(query, name string) (string, bool) {
	for query != "" {
		var pair string
		pair, query, _ = strings.Cut(query, "&")
		key, value, _ := strings.Cut(pair, "=")
		if key == name {
			return value, true
		}
	}
	return "", false
}
