# codec/module.mk - extra rules for the codec module (included by the Makefile).
# The snapping loops only vectorise without errno / trapping semantics.
$(REL)/obj/codec/snap.o: CFLAGS += -O3 -fno-math-errno -fno-trapping-math
