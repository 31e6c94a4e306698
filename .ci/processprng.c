/*
 * bcryptprimitives.dll for Wine: Go (1.22 on) Windows programs load
 * ProcessPrng from it at start, and Debian's Wine 8.0 has no such DLL
 * ("fatal error: bcryptprimitives.dll not found"). This one exports
 * ProcessPrng over RtlGenRandom (SystemFunction036 in advapi32), which
 * Wine has. Built by .ci/wine with x86_64-w64-mingw32-gcc, for CI only.
 */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buf, ULONG len);

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len)
{
	while (len > 0) {
		ULONG n = len > 0x40000000 ? 0x40000000 : (ULONG)len;
		if (!SystemFunction036(data, n))
			return FALSE;
		data += n;
		len -= n;
	}
	return TRUE;
}
