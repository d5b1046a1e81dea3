/* rsbegin.o for i686-pc-windows-gnu, which rustc links first into every
 * executable and DLL of that target. Built here because the standard library
 * is built from source (-Zbuild-std), which does not make the startup objects
 * a rustup toolchain ships; this is what Rust's own library/rtstartup/rsbegin.rs
 * does. 32-bit MinGW code unwinds with DWARF tables: the image registers its
 * .eh_frame section with libgcc's unwinder at start and deregisters it at exit.
 * This object's part of .eh_frame is its start (the linker puts it first);
 * rsend.o's zero word ends it. */
extern void __register_frame_info(const void *begin, void *object);
extern void *__deregister_frame_info(const void *begin);

__attribute__((section(".eh_frame"), used)) const char __EH_FRAME_BEGIN__[0] = {};

/* libgcc's `struct object` (unwind-dw2-fde.h): six words of bookkeeping. */
static void *object[6];

static void init(void) { __register_frame_info(__EH_FRAME_BEGIN__, object); }
static void uninit(void) { __deregister_frame_info(__EH_FRAME_BEGIN__); }

/* MinGW's startup code runs .ctors and .dtors entries; .65535 sorts last,
 * and constructors run last-first, so these run first and last. */
__attribute__((section(".ctors.65535"), used)) static void (*const p_init)(void) = init;
__attribute__((section(".dtors.65535"), used)) static void (*const p_uninit)(void) = uninit;
