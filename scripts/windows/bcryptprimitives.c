/* bcryptprimitives.dll for Wine 8, which does not ship it.
 *
 * Rust's standard library (1.78 and later) imports ProcessPrng from
 * bcryptprimitives.dll; without the DLL every Rust program fails to start
 * under Wine 8 ("Library bcryptprimitives.dll ... not found"). Newer Wine
 * ships it. scripts/test-windows.sh builds this file with mingw-w64 and
 * copies it into its own Wine prefix's system32; it never reaches a real
 * Windows machine.
 */
#include <windows.h>

/* advapi32's SystemFunction036, better known as RtlGenRandom. */
BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len)
{
    while (len > 0) {
        ULONG chunk = len > 0x10000000 ? 0x10000000 : (ULONG)len;
        if (!SystemFunction036(data, chunk))
            return FALSE;
        data += chunk;
        len -= chunk;
    }
    return TRUE;
}
