// A CGI function (WAGI) in Go, built for GOOS=wasip1: Wafer runs main once per request, with
// the request in the environment (REQUEST_METHOD, PATH_INFO, QUERY_STRING, HTTP_*) and its
// body on stdin. What it prints is the response: headers, a blank line, the body.
package main

import (
	"fmt"
	"io"
	"os"
)

func main() {
	body, _ := io.ReadAll(os.Stdin)
	fmt.Print("Content-Type: text/plain; charset=utf-8\n\n")
	fmt.Printf("Hello from {{name}}! (%s %s, %d bytes in)\n",
		os.Getenv("REQUEST_METHOD"), os.Getenv("PATH_INFO"), len(body))
}
