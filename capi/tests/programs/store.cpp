// A C++ message store provider with known leaks, for the C ABI test.
// Usage: store REPORT_DIR. Prints one line of counts; exit 0.
#include <cstdio>
#include <cstring>
#include <new>

#include "mapileak.hpp"

// The C++ heap, tracked: every new and delete of the program goes through
// mapileak, so the blocks of the leaked objects, and the scratch string
// below, are reported at Logoff.
MAPILEAK_REPLACE_OPERATOR_NEW

typedef unsigned long ULONG;

struct IUnknownLike {
    virtual ULONG AddRef() = 0;
    virtual ULONG Release() = 0;

protected:
    virtual ~IUnknownLike() = default;
};

// The usual provider object: a tracked count, destroyed at its last Release.
template <const char *Kind>
class Object : public IUnknownLike {
public:
    explicit Object(const char *label) : count_(Kind, label) {}
    ULONG AddRef() override { return count_.AddRef(); }
    ULONG Release() override {
        ULONG n = count_.Release();
        if (n == 0) delete this;
        return n;
    }
    const mapileak::RefCount &count() const { return count_; }

protected:
    mapileak::RefCount count_;
};

extern const char kTable[] = "IMAPITable";
extern const char kFolder[] = "IMAPIFolder";
extern const char kMessage[] = "IMessage";

class Table : public Object<kTable> {
public:
    using Object::Object;
};

// The provider's own classes, in an anonymous namespace as provider code
// often has them: their debug info carries no linkage name, so the report's
// names come from the symbol table.
namespace {

class Folder : public Object<kFolder> {
public:
    using Object::Object;

    __attribute__((noinline)) Table *GetContentsTable() {
        Table *table = new Table("contents of Inbox");
        table->count().OpenedFrom(count_);
        return table;
    }

    __attribute__((noinline)) Table *GetHierarchyTable() {
        Table *table = new Table("hierarchy of Inbox");
        table->count().OpenedFrom(count_);
        return table;
    }
};

// A message that keeps its folder referenced while it lives.
class Message : public Object<kMessage> {
public:
    Message(const char *label, Folder *folder) : Object(label), folder_(folder) {
        folder_->AddRef();
        count_.Hold(folder_->count());
    }
    ~Message() override {
        count_.ReleaseHold(folder_->count());
        folder_->Release();
    }

private:
    Folder *folder_;
};

}  // namespace

__attribute__((noinline)) static void *LeakRecipientRows() {
    void *rows = nullptr;
    void *name = nullptr;
    mapileak_allocate_buffer(64, &rows);
    mapileak_allocate_more(16, rows, &name);
    return rows;  // never freed
}

// A C string kept "for later" and never freed: a heap leak of C code.
__attribute__((noinline)) static char *RememberProfileName(const char *name) {
    char *copy = static_cast<char *>(mapileak_malloc(std::strlen(name) + 1));
    if (copy != nullptr) std::strcpy(copy, name);
    return copy;
}

// The same in C++: a new[] no delete[] matches.
__attribute__((noinline)) static char *CopyFolderName(const char *name) {
    char *copy = new char[std::strlen(name) + 1];
    std::strcpy(copy, name);
    return copy;
}

// Every form of new and delete, balanced: nothing of this is reported.
struct alignas(64) CacheLine {
    unsigned char bytes[64];
};

__attribute__((noinline)) static bool EveryFormOfNew() {
    delete new int(1);
    delete[] new int[3];
    delete new (std::nothrow) int(2);
    delete[] new (std::nothrow) int[4];
    CacheLine *line = new CacheLine();
    bool aligned = reinterpret_cast<uintptr_t>(line) % 64 == 0;
    delete line;
    CacheLine *lines = new CacheLine[2];
    aligned = aligned && reinterpret_cast<uintptr_t>(lines) % 64 == 0;
    delete[] lines;
    delete new (std::nothrow) CacheLine();
    char *grown = static_cast<char *>(mapileak_calloc(4, 2));
    if (grown == nullptr || grown[7] != 0) return false;
    std::strcpy(grown, "abc");
    grown = static_cast<char *>(mapileak_realloc(grown, 4096));
    bool kept = grown != nullptr && std::strcmp(grown, "abc") == 0;
    mapileak_free(grown);
    mapileak_free(nullptr);
    return aligned && kept && mapileak_aligned_malloc(8, 3) == nullptr;
}

__attribute__((noinline)) static void FreeChildByMistake() {
    void *row = nullptr;
    void *prop = nullptr;
    mapileak_allocate_buffer(32, &row);
    mapileak_allocate_more(8, row, &prop);
    mapileak_free_buffer(prop);  // a chained child: buffer-free-child
    mapileak_free_buffer(row);
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    mapileak_set_output_dir(argv[1]);
    uint64_t session = mapileak_logon(MAPILEAK_MESSAGE_STORE, "C++ store");
    mapileak_summary summary = {};
    {
        mapileak::Scope scope(session);
        Folder *inbox = new Folder("Inbox");
        Table *contents = inbox->GetContentsTable();  // the leak
        (void)contents;
        Table *hierarchy = inbox->GetHierarchyTable();
        hierarchy->Release();
        inbox->Release();

        Folder *sent = new Folder("Sent Items");
        Message *draft = new Message("draft", sent);  // leaked, holding Sent Items
        (void)draft;
        sent->Release();

        LeakRecipientRows();
        FreeChildByMistake();
        RememberProfileName("Outlook");
        CopyFolderName("Deleted Items");
        if (!EveryFormOfNew()) return 7;

        // Misuse must come back as failure values, not crashes.
        if (mapileak_object_add_ref(nullptr) != 0 || mapileak_enter(999999) != -1 ||
            mapileak_free_buffer(nullptr) != 0 || mapileak_set_mode("loud") != -1 ||
            mapileak_allocate_buffer(8, nullptr) == 0 ||
            mapileak_object_new(999999, "IMAPITable", "no such owner") != nullptr) {
            return 4;
        }
        // A count mapileak cannot track (an unknown owner) still counts.
        mapileak::RefCount orphan("IMAPITable", "orphan", 999999);
        if (orphan.handle() != nullptr || orphan.AddRef() != 2 || orphan.Release() != 1 ||
            orphan.Release() != 0 || orphan.Release() != 0) {
            return 5;
        }
    }
    // A snapshot while the logon is open: the logon's report and what is
    // outside any logon; nothing changes for the Logoff.
    if (mapileak_snapshot("before logoff") < 1) return 8;
    if (mapileak_ms_logoff(session, &summary) != 0) return 3;
    // As a DLL does at DLL_PROCESS_DETACH: the leaks are still alive.
    int exit_reports = mapileak_process_exit();
    if (exit_reports < 1 || mapileak_process_exit() != 0) return 6;
    std::printf(
        "mapileak-cpp leaked_objects=%llu leak_roots=%llu heap_blocks=%llu mapi_buffers=%llu "
        "findings=%llu\n",
        (unsigned long long)summary.leaked_objects, (unsigned long long)summary.leak_roots,
        (unsigned long long)summary.heap_blocks, (unsigned long long)summary.mapi_buffers,
        (unsigned long long)summary.findings);
    return 0;
}
