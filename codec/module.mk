# codec/module.mk - extra rules for the codec module (included by the Makefile).
# The snapping loops only vectorise without errno / trapping semantics.
$(REL)/obj/codec/snap.o: CFLAGS += -O3 -fno-math-errno -fno-trapping-math
# The three-colour PNG writer's per-row colour indexing is a vector loop.
$(REL)/obj/codec/png_bits.o: CFLAGS += -O3
