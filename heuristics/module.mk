# heuristics/module.mk - the sample writer the tool checks (test_tools.sh) use.
$(REL)/heuristics/repair_sample: tests/heuristics/repair_sample.c $(REL_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(BASE_CFLAGS) $(CFLAGS) -o $@ $< $(REL_LIB) $(LDLIBS)
test: $(REL)/heuristics/repair_sample
test-heuristics: $(REL)/heuristics/repair_sample
