// A C++ provider's objects as third-party code writes them: each class
// counts its own references and deletes itself at 0, some through
// mapileak.hpp's Release(this), some with the usual
// `if (n == 0) delete this;`. The client releases two of them once too
// often, through pointers it kept: without mapileak's quarantine, a
// use-after-free. No entry point enters a scope: there is one logon, so
// what is made belongs to it.
//
// Usage: overrelease REPORT_DIR. Prints one line of counts; exit 0 (the
// host survived).
#include <cstdio>
#include <cstring>

#include "mapileak.hpp"

MAPILEAK_REPLACE_OPERATOR_NEW

typedef unsigned long ULONG;

// A MAPI-style interface: pure virtual methods, no destructor.
struct IUnknownLike {
    virtual ULONG AddRef() = 0;
    virtual ULONG Release() = 0;
};

// The count default-constructed, described in the constructor; deleted
// through Release(this).
class Table : public IUnknownLike {
public:
    explicit Table(const char *label) {
        count_.Init("IMAPITable", label);
        rows_ = new char[64];
        std::memset(rows_, 0, 64);
    }
    ~Table() { delete[] rows_; }
    ULONG AddRef() override { return count_.AddRef(); }
    ULONG Release() override { return count_.Release(this); }

private:
    mapileak::RefCount count_;
    char *rows_;
};

// The pattern most providers have: the count's 0 decides the delete.
class Status final : public IUnknownLike {
public:
    Status() : count_("IMAPIStatus", "status object") {}
    ULONG AddRef() override { return count_.AddRef(); }
    ULONG Release() override {
        ULONG n = count_.Release();
        if (n == 0) delete this;
        return n;
    }

private:
    mapileak::RefCount count_;
};

__attribute__((noinline)) static IUnknownLike *GetContentsTable() {
    return new Table("contents of Inbox");
}

__attribute__((noinline)) static IUnknownLike *OpenStatus() { return new Status(); }

__attribute__((noinline)) static IUnknownLike *CacheHierarchy() {
    return new Table("hierarchy cache");  // the leak: nothing releases it
}

__attribute__((noinline)) static char *CopyDisplayName(const char *name) {
    char *copy = new char[std::strlen(name) + 1];  // the leak: never deleted
    std::strcpy(copy, name);
    return copy;
}

// The client's bugs: one Release too many on each object, through a
// pointer it kept after its last reference went.
__attribute__((noinline)) static void ClientReleasesTableTwice(IUnknownLike *table) {
    table->Release();
    table->Release();
}

__attribute__((noinline)) static void ClientReleasesStatusTwice(IUnknownLike *status) {
    status->Release();
    status->Release();
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    mapileak_set_output_dir(argv[1]);
    uint64_t session = mapileak_logon(MAPILEAK_MESSAGE_STORE, "C++ objects");

    ClientReleasesTableTwice(GetContentsTable());
    ClientReleasesStatusTwice(OpenStatus());
    // A balanced object: AddRef and Release in pairs, then the last one.
    IUnknownLike *balanced = GetContentsTable();
    balanced->AddRef();
    balanced->Release();
    balanced->Release();
    // Many objects come and go after: the quarantine stays bounded.
    for (int i = 0; i < 10000; ++i) OpenStatus()->Release();

    CacheHierarchy();
    CopyDisplayName("Mailbox");

    mapileak_summary summary = {};
    if (mapileak_ms_logoff(session, &summary) != 0) return 3;
    std::printf("mapileak-overrelease leaked_objects=%llu heap_blocks=%llu findings=%llu\n",
                (unsigned long long)summary.leaked_objects,
                (unsigned long long)summary.heap_blocks, (unsigned long long)summary.findings);
    return 0;
}
