;; A guest that traps immediately: the server must answer 500 and keep serving.
(module
  (memory (export "memory") 1)
  (func (export "_start")
    unreachable))
