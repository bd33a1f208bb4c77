;; A CGI function in WebAssembly text: Wafer runs `_start` once per request; what it writes
;; to stdout (fd 1) is the response: headers, a blank line, the body. Wafer compiles .wat
;; directly: there is nothing to build.
(module
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "Content-Type: text/plain\n\nHello from {{name}}!\n")
  (func (export "_start")
    ;; One iovec at offset 0: the text at 16, its length.
    (i32.store (i32.const 0) (i32.const 16))
    (i32.store (i32.const 4) (i32.const {{wat_len}}))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))
