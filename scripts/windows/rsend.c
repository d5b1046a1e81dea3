/* rsend.o for i686-pc-windows-gnu (see rsbegin.c): linked last, it ends the
 * image's .eh_frame section with a zero length word, as Rust's
 * library/rtstartup/rsend.rs does. */
__attribute__((section(".eh_frame"), used)) const unsigned int __EH_FRAME_END__ = 0;
