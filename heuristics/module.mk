# heuristics/module.mk - the sample writer the tool checks (test_tools.sh) use.
$(REL)/heuristics/repair_sample: tests/heuristics/repair_sample.c $(REL_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(BASE_CFLAGS) $(CFLAGS) -o $@ $< $(REL_LIB) $(LDLIBS)
test: $(REL)/heuristics/repair_sample
test-heuristics: $(REL)/heuristics/repair_sample
# The confidence-weighted vote sums 768 cells per row: it vectorises at -O3.
$(REL)/obj/heuristics/analyse.o: CFLAGS += -O3
# The sample writer of the payload-shaping check (test_shape.sh).
$(REL)/heuristics/shape_sample: tests/heuristics/shape_sample.c $(REL_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(BASE_CFLAGS) $(CFLAGS) -o $@ $< $(REL_LIB) $(LDLIBS)
test: $(REL)/heuristics/shape_sample
test-heuristics: $(REL)/heuristics/shape_sample
