// Minimal Go guest (GOOS=wasip1): a CGI header and a greeting on stdout.
package main

import "os"

func main() {
	if _, err := os.Stdout.WriteString("Content-Type: text/plain\n\nHello from Go!\n"); err != nil {
		os.Exit(1)
	}
}
