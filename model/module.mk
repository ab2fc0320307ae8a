# model/module.mk - extra rules for the model module.
# The CLIP vocabulary is embedded by model/vocab_data.c (.incbin): rebuild its
# objects when the file changes.
MODEL_VOCAB_GZ := model/data/bpe_simple_vocab_16e6.txt.gz
$(REL)/obj/model/vocab_data.o $(ASAN)/obj/model/vocab_data.o $(FZ)/obj/model/vocab_data.o: $(MODEL_VOCAB_GZ)

# The component and pipeline tests run on every backend linked in: they get
# the SIMT emulation of the CUDA kernels (kernels/module.mk) to run on "emu".
MODEL_EMU_TESTS := $(ASAN)/tests/model/test_components $(ASAN)/tests/model/test_pipeline
$(MODEL_EMU_TESTS): $(EMU_ASAN_OBJS)
$(MODEL_EMU_TESTS): LDLIBS += $(EMU_ASAN_OBJS) $(ASAN_LIB) -lstdc++
