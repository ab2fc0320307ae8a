# server/module.mk - extra rules for netdiffd.
# The fuzz targets of the request and config parsers link the server's parser
# objects beside the library (a static pattern rule: it wins over $(FZ)/%).
SRV_PARSE := server/config.c server/request.c
SRV_FUZZ := $(FZ)/fuzz_server_request $(FZ)/fuzz_server_config
$(SRV_FUZZ): $(FZ)/%: tests/fuzz/%.c $(call fuzz_obj,$(SRV_PARSE)) $(FUZZ_LIB)
	@mkdir -p $(dir $@)
	$(CLANG) $(filter-out -MMD -MP,$(BASE_CFLAGS)) -O1 -g -fsanitize=fuzzer,address,undefined -o $@ $< $(call fuzz_obj,$(SRV_PARSE)) $(FUZZ_LIB) $(LDLIBS)

# make loadtest: the daemon under load (tests/bench/bench_server.sh)
.PHONY: loadtest
loadtest: $(REL)/netdiff $(REL)/netdiffd
	@sh tests/bench/bench_server.sh
bench: $(REL)/netdiffd
