// The visits example, written with the Go guest SDK (wafer.dev/guest/wafer): a
// CGI program that counts its visits in the key-value store and greets with a
// config value. The same program exists in every SDK's language, so one test
// covers them all.
//
//   - config `greeting` (default `hello`; an error other than not_found is
//     reported as `config error: MSG`);
//   - kv key `visits`, a decimal count, incremented (a kv error is reported as
//     `kv error: MSG` and the visit number is 0);
//   - log line `visit N`;
//   - output `GREETING, visit N`, then the reports, then one line for each of
//     the query parameters `fetch=URL` (an HTTP GET), `publish=TOPIC`
//     (publishes the request body) and `secret=NAME` (the length of a config
//     value or secret, never the value).
//
// The query values are taken raw, up to the next `&`. It always exits 0.
package main

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"

	"wafer.dev/guest/wafer"
)

func main() {
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()

	greeting, configErr := wafer.Config("greeting")
	if configErr != nil {
		greeting = "hello"
		if wafer.IsNotFound(configErr) {
			configErr = nil
		}
	}
	visit, kvErr := countVisit()
	wafer.LogInfo(fmt.Sprintf("visit %d", visit))

	fmt.Fprintf(out, "Content-Type: text/plain\n\n%s, visit %d\n", greeting, visit)
	if configErr != nil {
		fmt.Fprintf(out, "config error: %v\n", configErr)
	}
	if kvErr != nil {
		fmt.Fprintf(out, "kv error: %v\n", kvErr)
	}

	if url, ok := wafer.QueryRaw("fetch"); ok {
		if resp, err := wafer.Get(url); err != nil {
			fmt.Fprintf(out, "fetch error: %v\n", err)
		} else {
			fmt.Fprintf(out, "fetch: %d %s\n", resp.Status, resp.Body)
		}
	}

	if topic, ok := wafer.QueryRaw("publish"); ok {
		if body, err := wafer.Body(); err != nil {
			fmt.Fprintf(out, "publish error: reading the request body: %v\n", err)
		} else if err := wafer.Publish(topic, body); err != nil {
			fmt.Fprintf(out, "publish error: %v\n", err)
		} else {
			fmt.Fprintln(out, "published")
		}
	}

	if name, ok := wafer.QueryRaw("secret"); ok {
		if secret, err := wafer.Config(name); err != nil {
			fmt.Fprintf(out, "secret error: %v\n", err)
		} else {
			fmt.Fprintf(out, "secret length: %d\n", len(secret))
		}
	}
}

// countVisit reads the `visits` count (absent: 0), stores it plus one and
// returns the new count. An unreadable count starts again from 0. If a kv call
// fails it returns 0 and the error, without storing anything.
func countVisit() (uint64, error) {
	var previous uint64
	raw, err := wafer.KVGet("visits")
	switch {
	case err == nil:
		previous, _ = strconv.ParseUint(strings.TrimSpace(string(raw)), 10, 64)
	case !wafer.IsNotFound(err):
		return 0, err
	}
	visit := previous + 1
	if err := wafer.KVSet("visits", []byte(strconv.FormatUint(visit, 10))); err != nil {
		return 0, err
	}
	return visit, nil
}
