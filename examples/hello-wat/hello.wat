;; The smallest useful Wafer guest: one fd_write of a fixed CGI response.
;; Memory layout:
;;   0..8   iovec { buf = 16, len = 42 }
;;   8..12  nwritten (ignored)
;;   16..58 the response bytes
(module
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "\10\00\00\00\2a\00\00\00")
  (data (i32.const 16) "Content-Type: text/plain\n\nHello from WAT!\n")
  (func (export "_start")
    ;; fd_write(stdout, iovs = 0, iovs_len = 1, nwritten = 8)
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))
