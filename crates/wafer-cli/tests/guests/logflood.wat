;; Logs 1,000 lines of 50 bytes through the `log` host call and 1,000 more through stderr,
;; then answers "done": a guest that floods its log.
(module
  (import "wapc" "__host_call"
    (func $host_call (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 100) "wafer")
  (data (i32.const 110) "log")
  (data (i32.const 120) "info")
  ;; 50 bytes each, the stderr one ending in a newline.
  (data (i32.const 200) "host line ........................................")
  (data (i32.const 300) "stderr line .....................................\n")
  (data (i32.const 400) "Content-Type: text/plain\n\ndone\n")
  (func $write (param $fd i32) (param $ptr i32) (param $len i32)
    (i32.store (i32.const 0) (local.get $ptr))
    (i32.store (i32.const 4) (local.get $len))
    (drop (call $fd_write (local.get $fd) (i32.const 0) (i32.const 1) (i32.const 8))))
  (func (export "_start")
    (local $i i32)
    (loop $again
      (drop (call $host_call
        (i32.const 100) (i32.const 5) (i32.const 110) (i32.const 3)
        (i32.const 120) (i32.const 4) (i32.const 200) (i32.const 50)))
      (call $write (i32.const 2) (i32.const 300) (i32.const 50))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $again (i32.lt_u (local.get $i) (i32.const 1000))))
    (call $write (i32.const 1) (i32.const 400) (i32.const 31))))
