# kernels/module.mk - extra rules for the kernels module.
.PHONY: test-ops
# the op parity test alone (every op, every backend, against cpu_ref)
test-ops: test-kernels
