# model/module.mk - extra rules for the model module.
# The CLIP vocabulary is embedded by model/vocab_data.c (.incbin): rebuild its
# objects when the file changes.
MODEL_VOCAB_GZ := model/data/bpe_simple_vocab_16e6.txt.gz
$(REL)/obj/model/vocab_data.o $(ASAN)/obj/model/vocab_data.o $(FZ)/obj/model/vocab_data.o: $(MODEL_VOCAB_GZ)
