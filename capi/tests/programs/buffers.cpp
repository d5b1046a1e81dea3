// MAPI buffers as a C++ provider hands them around: a QueryRows row set
// whose every row has its own property array (freed by the caller with
// FreeProws, unseen), and a MAPI utility object (as CreateIProp's IPropData
// is) that keeps buffers of its own, built on the provider's allocators.
// When the object that keeps the utility object leaks, the utility's
// buffers are listed under it, not as leak roots of their own.
//
// Usage: buffers REPORT_DIR. Prints one line of counts; exit 0.
#include <cstdio>
#include <cstring>

#include "mapileak.hpp"

MAPILEAK_REPLACE_OPERATOR_NEW

typedef uint32_t ULONG;  // MAPI's: 32 bits everywhere

// MAPI's row set layout (mapidefs.h): SPropValue arrays per row.
struct SPropValue {
    ULONG ulPropTag;
    ULONG dwAlignPad;
    long long value;
};
struct SRow {
    ULONG ulAdrEntryPad;
    ULONG cValues;
    SPropValue *lpProps;
};
struct SRowSet {
    ULONG cRows;
    SRow aRow[1];
};

// Stands for IPropData: it allocates with the allocators it was given (the
// provider's, through mapileak) and frees what it holds when released.
class PropData {
public:
    PropData() {
        mapileak_allocate_buffer(sizeof(SPropValue) * 4, &props_);
        mapileak_allocate_buffer(64, &name_);
    }
    ~PropData() {
        mapileak_free_buffer(props_);
        mapileak_free_buffer(name_);
    }

private:
    void *props_ = nullptr;
    void *name_ = nullptr;
};

class MailUser {
public:
    explicit MailUser(const char *label) : count_("IMailUser", label) {
        mapileak::BufferOwner owner(count_);  // CreateIProp, as it were
        props_ = new PropData();
    }
    ~MailUser() { delete props_; }
    ULONG AddRef() { return count_.AddRef(); }
    ULONG Release() { return count_.Release(this); }

private:
    mapileak::RefCount count_;
    PropData *props_;
};

__attribute__((noinline)) static SRowSet *QueryRows(ULONG rows) {
    SRowSet *set = nullptr;
    mapileak_allocate_buffer(sizeof(SRowSet) + (rows - 1) * sizeof(SRow),
                             reinterpret_cast<void **>(&set));
    set->cRows = rows;
    for (ULONG i = 0; i < rows; ++i) {
        set->aRow[i].cValues = 2;
        mapileak_allocate_buffer(2 * sizeof(SPropValue),
                                 reinterpret_cast<void **>(&set->aRow[i].lpProps));
    }
    // The planted leak: a scratch buffer nothing frees.
    void *scratch = nullptr;
    mapileak_allocate_buffer(100, &scratch);
    mapileak_rows_to_caller(set);  // the caller frees it with FreeProws
    return set;
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    mapileak_set_output_dir(argv[1]);
    uint64_t session = mapileak_logon(MAPILEAK_ADDRESS_BOOK, "C++ buffers");
    MailUser *kept = new MailUser("recipient");
    kept->Release();
    new MailUser("leaked user");  // the leak: its utility object's buffers go with it
    SRowSet *rows = QueryRows(3);
    (void)rows;  // the client's: FreeProws, with MAPI's own MAPIFreeBuffer
    if (mapileak_rows_to_caller(nullptr) != -1) return 4;
    mapileak_summary summary = {};
    if (mapileak_ab_logoff(session, &summary) != 0) return 3;
    std::printf("mapileak-buffers leaked_objects=%llu mapi_buffers=%llu findings=%llu\n",
                (unsigned long long)summary.leaked_objects,
                (unsigned long long)summary.mapi_buffers, (unsigned long long)summary.findings);
    return 0;
}
