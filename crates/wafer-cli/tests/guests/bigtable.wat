;; A guest that asks for a table of 100 million entries (800 MB of host memory): the
;; growth is refused (table.grow returns -1) and the guest then traps.
(module
  (memory (export "memory") 1)
  (table 1 funcref)
  (func (export "_start")
    (if (i32.eq (table.grow (ref.null func) (i32.const 100000000)) (i32.const -1))
      (then unreachable))))
