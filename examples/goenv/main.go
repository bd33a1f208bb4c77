// Echoes what a Go guest sees of its request: every environment variable (sorted,
// one KEY=value per line), then the request body from stdin if there is one.
package main

import (
	"bufio"
	"io"
	"os"
	"sort"
	"strings"
)

// key returns the part of a KEY=value entry before the first '='.
func key(kv string) string {
	if i := strings.IndexByte(kv, '='); i >= 0 {
		return kv[:i]
	}
	return kv
}

func main() {
	// Sort by key (not by the whole KEY=value string, where '=' would sort after
	// digits and put HTTP_X_10 before HTTP_X_1), matching rustenv's order.
	env := os.Environ()
	sort.SliceStable(env, func(i, j int) bool {
		ki, kj := key(env[i]), key(env[j])
		if ki != kj {
			return ki < kj
		}
		return env[i] < env[j]
	})

	body, err := io.ReadAll(os.Stdin)
	if err != nil {
		os.Stderr.WriteString("goenv: reading stdin: " + err.Error() + "\n")
		os.Exit(1)
	}

	w := bufio.NewWriter(os.Stdout)
	w.WriteString("Content-Type: text/plain\n\n")
	for _, kv := range env {
		w.WriteString(kv)
		w.WriteByte('\n')
	}
	if len(body) > 0 {
		w.WriteString("body: ")
		w.Write(body)
		if body[len(body)-1] != '\n' {
			w.WriteByte('\n')
		}
	}
	if err := w.Flush(); err != nil {
		os.Exit(1)
	}
}
