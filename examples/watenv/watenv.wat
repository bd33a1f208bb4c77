;; Prints a text/plain CGI header, then every environment variable as one
;; KEY=value line, using only WASI preview1 imports.
;;
;; Memory layout:
;;   0..8      iovec used by $write_all
;;   8..12     nwritten
;;   16..20    environ count      (from environ_sizes_get)
;;   20..24    environ buf size   (from environ_sizes_get)
;;   64..90    the CGI header
;;   1024..    environ pointer array (count * 4 bytes), then the string buffer.
;; Memory is grown on demand to fit the pointer array and the strings.
(module
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_sizes_get"
    (func $environ_sizes_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_get"
    (func $environ_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit"
    (func $proc_exit (param i32)))

  (memory (export "memory") 1)
  (data (i32.const 64) "Content-Type: text/plain\n\n")

  ;; Writes len bytes at ptr to stdout, retrying on short writes.
  ;; Returns 0 on success, otherwise the WASI errno (or 29 = EIO if no progress).
  (func $write_all (param $ptr i32) (param $len i32) (result i32)
    (local $err i32)
    (local $n i32)
    (block $done
      (loop $again
        (br_if $done (i32.eqz (local.get $len)))
        (i32.store (i32.const 0) (local.get $ptr))
        (i32.store (i32.const 4) (local.get $len))
        (local.set $err
          (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
        (if (local.get $err) (then (return (local.get $err))))
        (local.set $n (i32.load (i32.const 8)))
        (if (i32.eqz (local.get $n)) (then (return (i32.const 29))))
        (local.set $ptr (i32.add (local.get $ptr) (local.get $n)))
        (local.set $len (i32.sub (local.get $len) (local.get $n)))
        (br $again)))
    (i32.const 0))

  (func $check (param $err i32)
    (if (local.get $err) (then (call $proc_exit (i32.const 1)))))

  (func (export "_start")
    (local $count i32)
    (local $size i32)
    (local $buf i32)
    (local $end i32)
    (local $have i32)
    (local $p i32)

    (call $check (call $write_all (i32.const 64) (i32.const 26)))

    (call $check (call $environ_sizes_get (i32.const 16) (i32.const 20)))
    (local.set $count (i32.load (i32.const 16)))
    (local.set $size (i32.load (i32.const 20)))

    ;; Pointers at 1024, strings right after them. Sizes come from the host and are
    ;; bounded by its limits, so 32-bit arithmetic cannot overflow in practice.
    (local.set $buf (i32.add (i32.const 1024) (i32.shl (local.get $count) (i32.const 2))))
    (local.set $end (i32.add (local.get $buf) (local.get $size)))

    ;; Grow memory to cover [0, end).
    (local.set $have (i32.shl (memory.size) (i32.const 16)))
    (if (i32.gt_u (local.get $end) (local.get $have))
      (then
        (if (i32.eq
              (memory.grow
                (i32.shr_u
                  (i32.add (i32.sub (local.get $end) (local.get $have)) (i32.const 65535))
                  (i32.const 16)))
              (i32.const -1))
          (then (call $proc_exit (i32.const 1))))))

    (call $check (call $environ_get (i32.const 1024) (local.get $buf)))

    ;; Every string is NUL-terminated and they are packed back to back, so turning
    ;; each NUL into '\n' yields exactly one KEY=value line per variable.
    (local.set $p (local.get $buf))
    (block $done
      (loop $scan
        (br_if $done (i32.ge_u (local.get $p) (local.get $end)))
        (if (i32.eqz (i32.load8_u (local.get $p)))
          (then (i32.store8 (local.get $p) (i32.const 10))))
        (local.set $p (i32.add (local.get $p) (i32.const 1)))
        (br $scan)))

    (call $check (call $write_all (local.get $buf) (local.get $size)))))
