;; Publishes `{"topic":"loop","message":"again"}` on every call and answers "published".
;; Subscribed to `loop` itself, each delivery publishes again: the message hop limit must
;; end the loop.
(module
  (import "wapc" "__host_call"
    (func $host_call (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 100) "wafer")
  (data (i32.const 110) "pubsub")
  (data (i32.const 120) "publish")
  (data (i32.const 200) "{\"topic\":\"loop\",\"message\":\"again\"}")
  (data (i32.const 300) "Content-Type: text/plain\n\npublished\n")
  (func (export "_start")
    (drop (call $host_call
      (i32.const 100) (i32.const 5) (i32.const 110) (i32.const 6)
      (i32.const 120) (i32.const 7) (i32.const 200) (i32.const 34)))
    (i32.store (i32.const 0) (i32.const 300))
    (i32.store (i32.const 4) (i32.const 36))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))
