/* model/vocab_data.c - embeds model/data/bpe_simple_vocab_16e6.txt.gz (the
 * OpenAI CLIP BPE merges, MIT licence: model/data/README.md) into the library,
 * so no file is needed at run time. The assembler reads the file relative to
 * the repository root (make runs there); model/module.mk makes the objects
 * depend on it. */
#include <stddef.h>

__asm__(".section .rodata\n"
        ".global nd_clip_vocab_gz\n"
        ".type nd_clip_vocab_gz, @object\n"
        ".balign 16\n"
        "nd_clip_vocab_gz:\n"
        ".incbin \"model/data/bpe_simple_vocab_16e6.txt.gz\"\n"
        ".global nd_clip_vocab_gz_end\n"
        "nd_clip_vocab_gz_end:\n"
        ".byte 0\n"
        ".previous\n");

extern const unsigned char nd_clip_vocab_gz[];
extern const unsigned char nd_clip_vocab_gz_end[];

size_t nd_clip_vocab_gz_size(void);
const unsigned char *nd_clip_vocab_gz_data(void);

size_t nd_clip_vocab_gz_size(void) { return (size_t)(nd_clip_vocab_gz_end - nd_clip_vocab_gz); }
const unsigned char *nd_clip_vocab_gz_data(void) { return nd_clip_vocab_gz; }
