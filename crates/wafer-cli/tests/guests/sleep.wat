;; A guest that waits instead of computing: it asks WASI's `poll_oneoff` for a one-hour
;; sleep, so it sits in a host call where the epoch deadline never fires. One module for
;; three ABIs (deploy with `abi=cgi`, `abi=wapc` or `abi=exports`): `_start` (CGI),
;; `__guest_call` (waPC) and `nap` (a plain export) all sleep.
(module
  (import "wasi_snapshot_preview1" "poll_oneoff"
    (func $poll_oneoff (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  ;; One subscription at offset 0: userdata 0, tag 0 (clock), clock id 1 (monotonic),
  ;; timeout 3,600 s relative, precision 0, flags 0. Events go to 64, their count to 128.
  (func $sleep
    (i32.store8 (i32.const 8) (i32.const 0))
    (i32.store (i32.const 16) (i32.const 1))
    (i64.store (i32.const 24) (i64.const 3600000000000))
    (drop (call $poll_oneoff (i32.const 0) (i32.const 64) (i32.const 1) (i32.const 128))))
  (func (export "_start") (call $sleep))
  (func (export "__guest_call") (param i32 i32) (result i32) (call $sleep) (i32.const 1))
  (func (export "nap") (result i32) (call $sleep) (i32.const 1)))
