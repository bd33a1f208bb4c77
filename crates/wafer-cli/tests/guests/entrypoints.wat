;; A CGI module with two handlers: `_start` answers "from _start", the export `hello`
;; "from hello" (deployed with `entrypoint=hello`, as WAGI's `entrypoint` does), and `add`
;; takes parameters, so it cannot be an entrypoint.
(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 100) "from _start\n")
  (data (i32.const 200) "from hello\n")
  (func $print (param $at i32) (param $len i32)
    (i32.store (i32.const 0) (local.get $at))
    (i32.store (i32.const 4) (local.get $len))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8))))
  (func (export "_start") (call $print (i32.const 100) (i32.const 12)))
  (func (export "hello") (call $print (i32.const 200) (i32.const 11)))
  (func (export "add") (param i32 i32) (result i32) (i32.add (local.get 0) (local.get 1))))
