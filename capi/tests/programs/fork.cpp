// A C++ provider's test harness that forks while the provider's threads
// work (a death test, a helper process): two threads make and release
// objects of the provider's own kind (a kind made from its C name; each
// object's block goes through mapileak's quarantine), allocate and free
// with new and delete, and log on and off. Each child does the same once and logs off; it must be
// done in seconds, not wait on a lock a parent thread held at the fork
// (every delete waiting on the quarantine's, or for good on the kinds').
// Linux only (fork).
//
// First a fork while a thread holds each of the C ABI's own locks (the
// quarantine's, the made kinds'; a test hook), then 20 while two threads
// work. Usage: fork REPORT_DIR. Prints "forked N hung H"; exit 0.
#include <chrono>
#include <csignal>
#include <cstdio>
#include <initializer_list>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

#include "mapileak.hpp"

MAPILEAK_REPLACE_OPERATOR_NEW

// An object of the provider's own kind (a kind made from its C name) that
// deletes itself at its last Release: its block, freed with its count in
// it, waits in mapileak's quarantine.
class Cache final {
public:
    Cache(uint64_t session, const char *label) { count_.Init("IProviderCache", label, session); }
    uint32_t Release() { return count_.Release(this); }

private:
    mapileak::RefCount count_;
};

// One round of a provider's work: a logon, objects made and released,
// blocks made and freed. `keep`: one object is left alive (a leak in the
// report). Returns the report's leaked objects.
static int Round(const char *label, bool keep) {
    uint64_t session = mapileak_logon(MAPILEAK_MESSAGE_STORE, label);
    mapileak_enter(session);
    Cache *objects[64];
    for (auto &o : objects) o = new Cache(session, label);
    char *blocks[64];
    for (auto &b : blocks) b = new char[48];
    for (auto &b : blocks) delete[] b;
    for (auto &o : objects) o->Release();
    if (keep) new Cache(session, label);
    mapileak_leave();
    mapileak_summary summary{};
    mapileak_ms_logoff(session, &summary);
    return static_cast<int>(summary.leaked_objects);
}

// The test hook (feature test-hooks): a thread holds one of the C ABI's
// own locks for `ms` milliseconds.
extern "C" int mapileak__test_hold_lock_for(const char *which, unsigned ms);

// Forks a child that does one round with a leak; waits for it. False when
// it failed or was not done in ten seconds (then it is killed). A child is
// done in well under a second; one that inherited the quarantine's lock
// held waits 200 ms at each of its 65 frees, 13 s.
static bool ForkOne() {
    pid_t pid = fork();
    if (pid == 0) _exit(Round("forked child", true) == 1 ? 0 : 1);
    auto start = std::chrono::steady_clock::now();
    for (;;) {
        int status = 0;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return true;
            std::fprintf(stderr, "fork: child failed with status %#x\n", status);
            return false;
        }
        if (std::chrono::steady_clock::now() - start > std::chrono::seconds(10)) {
            std::fprintf(stderr, "fork: child %d not done in ten seconds; killed\n", pid);
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            return false;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    mapileak_set_output_dir(argv[1]);
    mapileak_set_mode("summary");
    Round("parent", false);
    int forked = 0, hung = 0;
    // A fork while a thread holds each of the C ABI's own locks: the fork
    // waits for it; without the handlers the child would have it held.
    for (const char *which : {"quarantine", "made kinds"}) {
        if (mapileak__test_hold_lock_for(which, 300) != 0) return 3;
        ++forked;
        if (!ForkOne()) {
            std::fprintf(stderr, "fork: with %s held\n", which);
            ++hung;
        }
    }
    // Forks while two threads work.
    for (int t = 0; t < 2; ++t) {
        std::thread([] {
            for (;;) Round("busy", false);
        }).detach();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    for (int i = 0; i < 20; ++i) {
        ++forked;
        if (!ForkOne()) ++hung;
    }
    std::printf("forked %d hung %d\n", forked, hung);
    std::fflush(stdout);
    _exit(0);  // without the process-end report of the busy threads
}
