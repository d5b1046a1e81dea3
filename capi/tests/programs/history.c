/* A C provider's own interface, made by name through the C ABI, with its
 * AddRef/Release history asked for: by MAPILEAK_HISTORY, or by
 * mapileak_set_history (the second argument, when given). The object
 * leaks with one reference too many. Usage: history REPORT_DIR [KINDS].
 * Prints one line; exit 0. */
#include <stdio.h>

#include "mapileak.h"

static void take_two(mapileak_object *cache) {
    mapileak_object_add_ref(cache);
    mapileak_object_add_ref(cache);
}

static void give_one_back(mapileak_object *cache) { mapileak_object_release(cache); }

int main(int argc, char **argv) {
    uint64_t session;
    mapileak_object *cache;
    mapileak_summary summary = {0, 0, 0, 0, 0, 0, 0};
    if (argc < 2) return 2;
    mapileak_set_output_dir(argv[1]);
    if (argc > 2 && mapileak_set_history(argv[2]) != 0) return 3;
    if (mapileak_set_history(NULL) != -1) return 3;
    session = mapileak_logon(MAPILEAK_ADDRESS_BOOK, "history");
    cache = mapileak_object_new(session, "IProviderCache", "row cache");
    if (cache == NULL) return 4;
    take_two(cache);
    give_one_back(cache);
    if (mapileak_ab_logoff(session, &summary) != 0) return 5;
    printf("mapileak-history leaked_objects=%llu\n", (unsigned long long)summary.leaked_objects);
    return 0;
}
