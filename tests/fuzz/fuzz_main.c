/*  fuzz_main - runs a libFuzzer target without libFuzzer, so CI (gcc,
    ASan/UBSan) exercises it on every run: seed inputs from the command
    line's folder of seeds plus a fixed number of deterministic mutations
    of them. With clang and RECADO_FUZZ=ON the real fuzzer is built
    instead (cmake/tests/fuzz/CMakeLists.txt). Exits 0 when every input
    was handled (the target aborts on a violated property). */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

#define S_MAX_SEEDS 256
#define S_MAX_INPUT 4096

static uint64_t s_state = 0x9E3779B97F4A7C15ULL;

static uint32_t
s_rand (void)
{
    s_state ^= s_state << 13;
    s_state ^= s_state >> 7;
    s_state ^= s_state << 17;
    return (uint32_t)s_state;
}

int
main (int argc, char **argv)
{
    if (argc < 2) {
        fprintf (stderr, "usage: %s SEED_DIR [ITERATIONS]\n", argv[0]);
        return 64;
    }
    long iterations = argc > 2 ? atol (argv[2]) : 50000;
    static uint8_t seeds[S_MAX_SEEDS][S_MAX_INPUT];
    static size_t sizes[S_MAX_SEEDS];
    int nseeds = 0;
    DIR *dir = opendir (argv[1]);
    if (!dir) {
        perror (argv[1]);
        return 1;
    }
    struct dirent *e;
    while ((e = readdir (dir)) && nseeds < S_MAX_SEEDS) {
        if (e->d_name[0] == '.')
            continue;
        char path[1024];
        snprintf (path, sizeof path, "%s/%s", argv[1], e->d_name);
        FILE *f = fopen (path, "rb");
        if (!f)
            continue;
        sizes[nseeds] = fread (seeds[nseeds], 1, S_MAX_INPUT, f);
        fclose (f);
        LLVMFuzzerTestOneInput (seeds[nseeds], sizes[nseeds]);
        nseeds++;
    }
    closedir (dir);
    if (nseeds == 0) {
        fprintf (stderr, "no seeds in %s\n", argv[1]);
        return 1;
    }
    uint8_t buf[S_MAX_INPUT];
    for (long i = 0; i < iterations; i++) {
        int s = (int)(s_rand () % (uint32_t)nseeds);
        size_t size = sizes[s];
        memcpy (buf, seeds[s], size);
        int edits = 1 + (int)(s_rand () % 4);
        for (int k = 0; k < edits; k++) {
            uint32_t r = s_rand ();
            size_t pos = size ? r % size : 0;
            switch ((r >> 16) % 4) {
                case 0: /* flip a byte */
                    if (size)
                        buf[pos] ^= (uint8_t)(1u << (r >> 24) % 8);
                    break;
                case 1: /* random byte */
                    if (size)
                        buf[pos] = (uint8_t)(r >> 8);
                    break;
                case 2: /* insert */
                    if (size < S_MAX_INPUT) {
                        memmove (buf + pos + 1, buf + pos, size - pos);
                        buf[pos] = (uint8_t)(r >> 8);
                        size++;
                    }
                    break;
                default: /* delete or truncate */
                    if (size) {
                        memmove (buf + pos, buf + pos + 1, size - pos - 1);
                        size--;
                    }
                    break;
            }
        }
        LLVMFuzzerTestOneInput (buf, size);
    }
    printf ("%d seeds, %ld mutated inputs: no property violated\n", nseeds,
            iterations);
    return 0;
}
