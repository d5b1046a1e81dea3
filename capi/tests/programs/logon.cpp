// A C++ logon object as providers write them: its state (a cached table,
// a copy of the profile name, the support object's reference) is freed in
// its destructor, which runs at MAPI's Release of the logon right after
// Logoff. The Logoff report is final at that Release, so none of it is a
// leak. No entry point enters a scope.
//
// Usage: logon REPORT_DIR ORDER, ORDER one of
//   release  Logoff, then the logon's Release (MAPI's order)
//   never    Logoff, the logon never released: the report comes at Shutdown
//   before   the logon released before Logoff (out of order)
// Prints one line: the summary Logoff returned; exit 0.
#include <cstdio>
#include <cstring>

#include "mapileak.hpp"

MAPILEAK_REPLACE_OPERATOR_NEW

typedef unsigned long ULONG;

struct IUnknownLike {
    virtual ULONG AddRef() = 0;
    virtual ULONG Release() = 0;
};

class Table final : public IUnknownLike {
public:
    explicit Table(const char *label) { count_.Init("IMAPITable", label); }
    ULONG AddRef() override { return count_.AddRef(); }
    ULONG Release() override { return count_.Release(this); }

private:
    mapileak::RefCount count_;
};

class Logon final : public IUnknownLike {
public:
    Logon(uint64_t provider, const char *profile)
        : session_(mapileak_provider_logon(provider, profile)) {
        count_.Init("IABLogon", profile, session_);
        mapileak_support_add_ref(session_);  // the support object, kept
        cached_ = new Table("cached contents table");
        profile_ = new char[std::strlen(profile) + 1];
        std::strcpy(profile_, profile);
    }
    // MAPI's Release of the logon: the logon's state goes.
    ~Logon() {
        cached_->Release();
        delete[] profile_;
        mapileak_support_release(session_);
        mapileak_logon_released(session_);
    }
    ULONG AddRef() override { return count_.AddRef(); }
    ULONG Release() override { return count_.Release(this); }
    uint64_t session() const { return session_; }

private:
    mapileak::RefCount count_;
    uint64_t session_;
    IUnknownLike *cached_;
    char *profile_;
};

int main(int argc, char **argv) {
    if (argc < 3) return 2;
    mapileak_set_output_dir(argv[1]);
    const char *order = argv[2];
    uint64_t provider = mapileak_provider_init(MAPILEAK_ADDRESS_BOOK, "C++ address book", 0);
    Logon *logon = new Logon(provider, "Mailbox");
    uint64_t session = logon->session();

    mapileak_summary summary = {};
    if (std::strcmp(order, "before") == 0) {
        logon->Release();
        if (mapileak_ab_logoff(session, &summary) != 0) return 3;
    } else {
        if (mapileak_ab_logoff(session, &summary) != 0) return 3;
        if (std::strcmp(order, "release") == 0) logon->Release();
    }
    mapileak_provider_shutdown(provider, nullptr);
    mapileak_provider_released(provider);
    std::printf("mapileak-logon %s leaked_objects=%llu heap_blocks=%llu findings=%llu\n", order,
                (unsigned long long)summary.leaked_objects,
                (unsigned long long)summary.heap_blocks, (unsigned long long)summary.findings);
    return 0;
}
