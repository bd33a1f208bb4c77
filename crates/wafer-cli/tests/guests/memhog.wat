;; A guest that grows its memory one 64 KiB page at a time until growth fails
;; (memory.grow returns -1, i.e. the memory limit refused it), then traps.
(module
  (memory (export "memory") 1)
  (func (export "_start")
    (block $refused
      (loop $grow
        ;; memory.grow returns the old size in pages, or -1 on failure.
        (br_if $refused (i32.eq (memory.grow (i32.const 1)) (i32.const -1)))
        (br $grow)))
    unreachable))
