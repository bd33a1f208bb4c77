;; A guest that writes 64 KiB chunks to stdout forever: the server must cut it
;; off at the stdout limit (502).
;; Memory layout:
;;   0..8    iovec { buf = 65536, len = 65536 }
;;   8..12   nwritten (ignored)
;;   65536.. the chunk (page 1, filled with 'x' by the data segment prefix and
;;           zeros after it; the content does not matter)
(module
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  (data (i32.const 0) "\00\00\01\00\00\00\01\00")
  (data (i32.const 65536) "Content-Type: text/plain\n\nxxxxxxxxxxxxxxxx")
  (func (export "_start")
    (loop $forever
      ;; fd_write(stdout, iovs = 0, iovs_len = 1, nwritten = 8); stop if it fails.
      (br_if $forever
        (i32.eqz (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))))
