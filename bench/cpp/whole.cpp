// The whole-program benchmark's C++ provider (scripts/bench-whole.sh), the
// shape of bench/src/bin/whole.rs: one logon, 3,000,000 heap blocks of
// 16-512 bytes from 20 call sites 5-40 frames deep (site_00 ... site_19),
// 1% of them leaked, and 50,000 COM-like objects with a few AddRef/Release
// pairs each, all released.
//
// Built three ways from this one source: plain; plain with
// -fsanitize=leak (LeakSanitizer); and with -DWITH_MAPILEAK, linked with
// mapileak's C ABI (operator new replaced, RefCount, the Logoff report).
// Usage: whole REPORT_DIR. Prints the line whole.rs prints.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#ifdef WITH_MAPILEAK
#include "mapileak.hpp"
MAPILEAK_REPLACE_OPERATOR_NEW
#endif

namespace {

const uint32_t kBlocks = 3000000;
const uint32_t kPerVisit = 100;
const size_t kObjects = 50000;
const uint32_t kSites = 20;
const size_t kRing = 4096;

// What the program keeps alive at once: a ring of recent blocks.
struct Work {
    std::vector<unsigned char *> ring = std::vector<unsigned char *>(kRing, nullptr);
    size_t next = 0;
    uint32_t n = 0;
    uint64_t sum = 0;

    // One block, as a provider uses one: filled, read back, kept a while.
    inline __attribute__((always_inline)) void Block(uint32_t site) {
        ++n;
        size_t size = 16 + ((n * 2654435761u) >> 7) % 497;
        unsigned char *b = new unsigned char[size];
        std::memset(b, static_cast<int>((n ^ site) & 0xff), size);
        b[0] = static_cast<unsigned char>(site);
        for (size_t i = 0; i < size; ++i) sum += b[i];
        if (n % 100 == 0) return;  // leaked
        unsigned char *&slot = ring[next++ % kRing];
        delete[] slot;
        slot = b;
    }
};

#define SITE(NAME, N)                                                 \
    __attribute__((noinline)) void site_##NAME(Work &w) {             \
        for (uint32_t i = 0; i < kPerVisit; ++i) w.Block(N);          \
        asm volatile("" ::: "memory");                                \
    }
SITE(00, 0) SITE(01, 1) SITE(02, 2) SITE(03, 3) SITE(04, 4)
SITE(05, 5) SITE(06, 6) SITE(07, 7) SITE(08, 8) SITE(09, 9)
SITE(10, 10) SITE(11, 11) SITE(12, 12) SITE(13, 13) SITE(14, 14)
SITE(15, 15) SITE(16, 16) SITE(17, 17) SITE(18, 18) SITE(19, 19)
#undef SITE

void (*const kSiteFns[kSites])(Work &) = {
    site_00, site_01, site_02, site_03, site_04, site_05, site_06, site_07, site_08, site_09,
    site_10, site_11, site_12, site_13, site_14, site_15, site_16, site_17, site_18, site_19};

// Down `depth` frames, then the site.
__attribute__((noinline)) void Descend(Work &w, uint32_t depth, uint32_t site) {
    if (depth == 0)
        kSiteFns[site](w);
    else
        Descend(w, depth - 1, site);
    // Not a tail call: each level keeps its frame.
    asm volatile("" ::: "memory");
}

// A COM-like object: a reference count and some state.
class Object {
public:
    explicit Object(uint64_t i) {
        for (auto &r : rows_) r = i;
    }
    unsigned long AddRef() { return count_.AddRef(); }
    unsigned long Release() {
#ifdef WITH_MAPILEAK
        return count_.Release(this);
#else
        unsigned long n = --count_;
        if (n == 0) delete this;
        return n;
#endif
    }

private:
#ifdef WITH_MAPILEAK
    mapileak::RefCount count_{"IMAPITable", "table"};
#else
    struct Count {
        std::atomic<uint32_t> n{1};
        unsigned long AddRef() { return ++n; }
        unsigned long operator--() { return --n; }
    } count_;
#endif
    uint64_t rows_[4];
};

// Where the kernel's status of this process is: Linux's /proc (elsewhere
// the lines say 0, and whole-run shows no memory).
const char kProc[] = "/proc/self/";

// A line of /proc/self/status, in kB (0 where there is none).
uint64_t StatusKb(const char *key) {
    std::ifstream in(std::string(kProc) + "status");
    std::string line;
    size_t len = std::strlen(key);
    while (std::getline(in, line))
        if (line.compare(0, len, key) == 0) return std::strtoull(line.c_str() + len, nullptr, 10);
    return 0;
}

}  // namespace

int main(int argc, char **argv) {
    (void)argv;
    if (argc != 2) {
        std::fprintf(stderr, "usage: whole REPORT_DIR\n");
        return 2;
    }
#ifdef WITH_MAPILEAK
    mapileak_set_output_dir(argv[1]);
    uint64_t session = mapileak_logon(MAPILEAK_ADDRESS_BOOK, "whole program");
    auto *scope = new mapileak::Scope(session);
#endif
    auto start = std::chrono::steady_clock::now();
    {
        std::vector<Object *> objects;
        objects.reserve(kObjects);
        for (size_t i = 0; i < kObjects; ++i) objects.push_back(new Object(i));
        Work w;
        for (uint32_t visit = 0; visit < kBlocks / kPerVisit; ++visit) {
            uint32_t site = visit % kSites;
            Descend(w, site * 35 / (kSites - 1), site);
            for (size_t k = 0; k < 5; ++k) {
                Object *o = objects[(visit * 5 + k) % kObjects];
                o->AddRef();
                o->Release();
            }
        }
        for (Object *o : objects) o->Release();
        for (unsigned char *b : w.ring) delete[] b;
        std::printf("sum %llu\n", static_cast<unsigned long long>(w.sum));
    }
    double work_ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
#ifdef WITH_MAPILEAK
    delete scope;
#endif
    uint64_t rss_before = StatusKb("VmRSS:");
    uint64_t peak = StatusKb("VmHWM:");
    { std::ofstream(std::string(kProc) + "clear_refs") << "5"; }
    auto logoff_start = std::chrono::steady_clock::now();
    uint64_t heap_blocks = 0;
#ifdef WITH_MAPILEAK
    mapileak_summary summary{};
    mapileak_ab_logoff(session, &summary);
    heap_blocks = summary.heap_blocks;
#endif
    double logoff_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() -
                                                                 logoff_start)
                           .count();
    std::printf("whole work_ms=%.1f peak_kb=%llu rss_before_kb=%llu logoff_peak_kb=%llu logoff_ms=%.1f "
                "heap_blocks=%llu\n",
                work_ms, static_cast<unsigned long long>(peak),
                static_cast<unsigned long long>(rss_before),
                static_cast<unsigned long long>(StatusKb("VmHWM:")), logoff_ms,
                static_cast<unsigned long long>(heap_blocks));
    return 0;
}
