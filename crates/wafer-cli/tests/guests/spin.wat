;; A guest that never finishes: an empty infinite loop.
;; Used for the time limit (504) and, with a generous timeout, for the
;; concurrency limit (it holds its slot until it is interrupted).
(module
  (memory (export "memory") 1)
  (func (export "_start")
    (loop $forever
      (br $forever))))
