package wafer_test

import (
	"fmt"
	"strings"

	"wafer.dev/guest/wafer"
)

func ExampleFetch() {
	resp, err := wafer.Fetch(wafer.Request{
		Method:  "POST",
		URL:     "https://api.example.com/items",
		Headers: [][2]string{{"Content-Type", "application/json"}},
		Body:    []byte(`{"name":"x"}`),
	})
	if err != nil {
		fmt.Println("fetch error:", err) // for example "denied: ..." or "failed: ..."
		return
	}
	fmt.Println(resp.Status, resp.Header("Content-Type"), len(resp.Body))
}

func ExampleKVGet() {
	value, err := wafer.KVGet("visits")
	switch {
	case wafer.IsNotFound(err):
		value = []byte("0")
	case err != nil:
		fmt.Println("kv error:", err)
		return
	}
	fmt.Println("visits:", string(value))
}

func ExampleKVList() {
	keys, err := wafer.KVList("user/")
	if err != nil {
		fmt.Println("kv error:", err)
		return
	}
	fmt.Println(strings.Join(keys, ", "))
}
