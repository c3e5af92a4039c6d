// xatm/export.h: XATM_EXPORT marks what libxatm exports: the public API of include/xatm/ and
// nothing else.
//
// libxatm is compiled with hidden visibility (lib/CMakeLists.txt), so a class or function
// without this mark stays inside the library: its internals and the Boost code it instantiates
// are not part of its ABI. The mark is an ELF visibility attribute, the same when building and
// using the library, so one hand-written line serves both and no generated header is needed
// (xatm runs on Linux only; there is no dllexport/dllimport pair to choose between).
#pragma once

#if defined(__GNUC__) || defined(__clang__)
#define XATM_EXPORT __attribute__((visibility("default")))
#else
#define XATM_EXPORT
#endif
