;; A CGI guest built the old way: it imports `wasi_unstable` (WASI preview 0), as TinyGo and
;; older Rust and AssemblyScript toolchains emit, and prints its first environment variable
;; count and a greeting.
(module
  (import "wasi_unstable" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_unstable" "environ_sizes_get" (func $environ_sizes (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 100) "Content-Type: text/plain\n\nHello from preview 0!\n")
  (func (export "_start")
    ;; Reading the environment's size makes the host build one (the program can read it).
    (drop (call $environ_sizes (i32.const 200) (i32.const 204)))
    (i32.store (i32.const 0) (i32.const 100))
    (i32.store (i32.const 4) (i32.const 48))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))
