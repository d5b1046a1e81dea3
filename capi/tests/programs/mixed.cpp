// Legacy C++ that mixes the C and C++ heaps, as third-party providers do:
// new[] blocks freed with free(), malloc blocks deleted, new[] deleted
// without []. On the C runtime it was written for this "works"; under
// MAPILEAK_REPLACE_OPERATOR_NEW and the opt-in MAPILEAK_REPLACE_MALLOC each
// is an alloc-dealloc-mismatch finding at the bad call, and the block is
// freed correctly. A free() mapileak does not see (here the C runtime's own,
// called by a parenthesized name) still frees the block: no corruption.
//
// Usage: mixed REPORT_DIR. Prints one line of counts; exit 0.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#ifdef _WIN32
#include <windows.h>
#else
#include <pthread.h>
#endif

#define MAPILEAK_REPLACE_MALLOC
#include "mapileak.hpp"

MAPILEAK_REPLACE_OPERATOR_NEW

// The mismatches and bad frees are the point of this program.
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#pragma GCC diagnostic ignored "-Wfree-nonheap-object"
#pragma GCC diagnostic ignored "-Wuse-after-free"

__attribute__((noinline)) static void FreeNewArrayWithFree() {
    char *name = new char[32];
    std::strcpy(name, "Contacts");
    free(name);  // the legacy bug: mapileak_free, through the macro
}

__attribute__((noinline)) static void DeleteMallocBlock() {
    int *rows = static_cast<int *>(malloc(4 * sizeof(int)));
    delete rows;  // operator delete of a malloc block
}

__attribute__((noinline)) static void DeleteArrayWithoutBrackets() {
    int64_t *ids = new int64_t[8];
    delete ids;  // new[] with delete
}

// A block mapileak did not make (the C runtime's strdup), freed through
// the macro: it goes to the C runtime's free, no finding.
__attribute__((noinline)) static void FreeStrdup() {
    char *copy = strdup("Global Address List");
    free(copy);
}

// Every pair matched: nothing to say.
__attribute__((noinline)) static bool Balanced() {
    char *a = new char[8];
    delete[] a;
    int *b = new int(3);
    delete b;
    void *c = malloc(24);
    c = realloc(c, 4096);
    free(c);
    char *d = static_cast<char *>(std::malloc(5));
    std::free(d);
    return true;
}

// realloc to 0 bytes frees the block and returns NULL, as the C runtimes of
// Linux (glibc) and Windows do: legacy code uses it as free().
__attribute__((noinline)) static bool ReallocToZeroFrees() {
    void *block = malloc(40);
    if (block == nullptr) return false;
    block = realloc(block, 0);
    return block == nullptr;
}

// Legacy code that frees with realloc(p, 0) a block it got from new[]:
// the block is freed all the same, and the finding names realloc.
__attribute__((noinline)) static void ReallocNewArrayToZero() {
    char *p = new char[24];
    if (realloc(p, 0) != nullptr) std::abort();
}

// Contract violations a debug heap is there to catch: each a finding at the
// call, none passed on to the C runtime (which would corrupt its heap or
// abort).
__attribute__((noinline)) static void DeleteTwice() {
    char *p = new char[16];
    delete[] p;
    delete[] p;  // heap-double-free
}

__attribute__((noinline)) static void FreeGarbage() {
    free(reinterpret_cast<void *>(0x1000));  // heap-bad-free
}

__attribute__((noinline)) static void FreeInterior() {
    char *p = static_cast<char *>(malloc(32));
    free(p + 1);  // heap-bad-free: not a block's address
    free(p);
}

// realloc keeps an aligned block aligned.
__attribute__((noinline)) static bool ReallocAligned() {
    void *a = mapileak_aligned_malloc(100, 4096);
    a = realloc(a, 200);
    bool aligned = reinterpret_cast<uintptr_t>(a) % 4096 == 0;
    free(a);
    return aligned;
}

// Blocks made on one thread and freed on another, more of them than a
// thread keeps record indexes for: none is left behind, and the blocks
// made after them (taking the indexes the other thread gave back) are
// theirs alone.
const int kHanded = 300;
char *handed[kHanded];

#ifdef _WIN32
static DWORD WINAPI FreeHanded(void *) {
#else
static void *FreeHanded(void *) {
#endif
    for (char *block : handed) delete[] block;
    return 0;
}

__attribute__((noinline)) static bool FreedOnAnotherThread() {
    for (int i = 0; i < kHanded; ++i) handed[i] = new char[16 + i];
#ifdef _WIN32
    HANDLE thread = CreateThread(nullptr, 0, FreeHanded, nullptr, 0, nullptr);
    if (thread == nullptr || WaitForSingleObject(thread, INFINITE) != WAIT_OBJECT_0) return false;
    CloseHandle(thread);
#else
    pthread_t thread;
    if (pthread_create(&thread, nullptr, FreeHanded, nullptr) != 0) return false;
    pthread_join(thread, nullptr);
#endif
    for (int round = 0; round < 2; ++round) {
        for (int i = 0; i < kHanded; ++i) handed[i] = new char[32];
        for (char *block : handed) delete[] block;
    }
    return true;
}

// A block of ours freed, pushed out of its thread's ring of recent frees
// and so given back to the C runtime, which hands its chunk to code that
// does not come through mapileak (here the C runtime's own malloc, called
// by a parenthesized name), as it does to strdup: that block, written at
// its start only, is the C runtime's, and free() through the macro frees
// it. Whether the chunk came back (glibc's does, at once).
__attribute__((noinline)) static bool ForeignBlockWhereOursWas() {
    char *ours = static_cast<char *>(malloc(100));
    void *at = ours;
    free(ours);
    for (int i = 0; i < 70; ++i) free(malloc(4000 + 16 * i));
    // What ours took from the C runtime: its size and its trailer.
    const size_t taken = 100 + 3 * sizeof(void *);
    char *tries[8] = {};
    bool reused = false;
    for (char *&block : tries) {
        block = static_cast<char *>((malloc)(taken));
        if (block == nullptr) break;
        block[0] = 0;
        if (block == at) {
            reused = true;
            break;
        }
    }
    for (char *block : tries) free(block);  // each one the C runtime's own
    return reused;
}

// The C runtime's own free() on a new[] block, unseen by mapileak (as in a
// file without MAPILEAK_REPLACE_MALLOC): freed correctly, no crash; the
// block is then reported at Logoff, since mapileak never saw it go.
__attribute__((noinline)) static void UnseenFree() {
    char *block = new char[48];
    (free)(block);
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    mapileak_set_output_dir(argv[1]);
    uint64_t session = mapileak_logon(MAPILEAK_ADDRESS_BOOK, "C++ mixed heaps");
    FreeNewArrayWithFree();
    DeleteMallocBlock();
    DeleteArrayWithoutBrackets();
    FreeStrdup();
    if (!Balanced()) return 4;
    if (!ReallocToZeroFrees()) return 7;
    ReallocNewArrayToZero();
    DeleteTwice();
    FreeGarbage();
    FreeInterior();
    if (!ReallocAligned()) return 5;
    if (!FreedOnAnotherThread()) return 6;
    bool reused = ForeignBlockWhereOursWas();
    // The heap still works after all of it.
    for (int i = 0; i < 1000; ++i) delete[] new char[64 + i];
    // Last: a block the C runtime may hand out again after an unseen free
    // leaves mapileak's record of it behind.
    UnseenFree();
    mapileak_summary summary = {};
    if (mapileak_ab_logoff(session, &summary) != 0) return 3;
    std::printf("mapileak-mixed heap_blocks=%llu heap_bytes=%llu findings=%llu reused=%d\n",
                (unsigned long long)summary.heap_blocks, (unsigned long long)summary.heap_bytes,
                (unsigned long long)summary.findings, reused ? 1 : 0);
    return 0;
}
