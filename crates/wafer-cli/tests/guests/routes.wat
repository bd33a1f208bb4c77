;; A CGI module that declares its own routes, WAGI style: `_routes` prints one `ROUTE EXPORT`
;; line per sub-route, and each handler answers "from NAME".
(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 100) "/hello hello\n/goodbye/... goodbye\n\n/main _start\n")
  (data (i32.const 200) "from _start\n")
  (data (i32.const 300) "from hello\n")
  (data (i32.const 400) "from goodbye\n")
  (func $print (param $at i32) (param $len i32)
    (i32.store (i32.const 0) (local.get $at))
    (i32.store (i32.const 4) (local.get $len))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8))))
  (func (export "_routes") (call $print (i32.const 100) (i32.const 48)))
  (func (export "_start") (call $print (i32.const 200) (i32.const 12)))
  (func (export "hello") (call $print (i32.const 300) (i32.const 11)))
  (func (export "goodbye") (call $print (i32.const 400) (i32.const 13))))
