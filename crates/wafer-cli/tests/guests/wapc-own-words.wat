;; A waPC guest that says "unknown operation" in words no SDK uses: `ping` answers `pong`,
;; `fail` fails with a message of its own, and any other operation OP fails with
;; `sorry, OP? never heard of it`.
(module
  (import "wapc" "__guest_request" (func $request (param i32 i32)))
  (import "wapc" "__guest_response" (func $response (param i32 i32)))
  (import "wapc" "__guest_error" (func $error (param i32 i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "ping")
  (data (i32.const 24) "pong")
  (data (i32.const 32) "fail")
  (data (i32.const 40) "it failed: fail")
  (data (i32.const 64) "sorry, ")
  (data (i32.const 80) "? never heard of it")
  ;; The operation lands at 1024, the payload at 4096; the message is built at 2048.
  (func $is (param $at i32) (param $len i32) (result i32)
    (i32.and
      (i32.eq (local.get $len) (i32.const 4))
      (i32.eq (i32.load (i32.const 1024)) (i32.load (local.get $at)))))
  (func (export "__guest_call") (param $op_len i32) (param $payload_len i32) (result i32)
    (call $request (i32.const 1024) (i32.const 4096))
    (if (call $is (i32.const 16) (local.get $op_len))
      (then (call $response (i32.const 24) (i32.const 4)) (return (i32.const 1))))
    (if (call $is (i32.const 32) (local.get $op_len))
      (then (call $error (i32.const 40) (i32.const 15)) (return (i32.const 0))))
    ;; "sorry, " + OP + "? never heard of it"
    (memory.copy (i32.const 2048) (i32.const 64) (i32.const 7))
    (memory.copy (i32.add (i32.const 2055) (i32.const 0)) (i32.const 1024) (local.get $op_len))
    (memory.copy (i32.add (i32.const 2055) (local.get $op_len)) (i32.const 80) (i32.const 19))
    (call $error (i32.const 2048) (i32.add (local.get $op_len) (i32.const 26)))
    (i32.const 0)))
