/*
 * An LD_PRELOAD shim that plays a data-corrupting file system under labfsx,
 * without labfsx's knowledge: from the FSX_SHIM_AT-th pwrite() of the
 * process on, every pwrite of 16 bytes or more is
 *   flip   - written with one byte changed (the middle one),
 *   drop   - reported as done but never written (a lost write),
 *   shift  - written 16 bytes further on than asked (a misplaced write).
 * FSX_SHIM selects the mode. Used by tests/unit/test_fsx.py.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef ssize_t (*pwrite_fn)(int, const void *, size_t, off_t);

static atomic_long calls;

static ssize_t shim(pwrite_fn real, int fd, const void *buf, size_t n, off_t off)
{
	const char *mode = getenv("FSX_SHIM"), *at = getenv("FSX_SHIM_AT");

	if (!mode || n < 16 || atomic_fetch_add(&calls, 1) + 1 < (at ? atol(at) : 1))
		return real(fd, buf, n, off);
	if (!strcmp(mode, "drop"))
		return (ssize_t)n;
	if (!strcmp(mode, "shift"))
		return real(fd, buf, n, off + 16) < 0 ? -1 : (ssize_t)n;
	if (!strcmp(mode, "flip")) {
		unsigned char *copy;
		ssize_t r;

		/* labfsx's buffers may be O_DIRECT ones: keep the alignment */
		if (posix_memalign((void **)&copy, 4096, n))
			return -1;
		memcpy(copy, buf, n);
		copy[n / 2] ^= 0x20;
		r = real(fd, copy, n, off);
		free(copy);
		return r;
	}
	return real(fd, buf, n, off);
}

ssize_t pwrite(int fd, const void *buf, size_t n, off_t off)
{
	static pwrite_fn real;

	if (!real)
		real = (pwrite_fn)dlsym(RTLD_NEXT, "pwrite");
	return shim(real, fd, buf, n, off);
}

ssize_t pwrite64(int fd, const void *buf, size_t n, off_t off)
{
	static pwrite_fn real;

	if (!real)
		real = (pwrite_fn)dlsym(RTLD_NEXT, "pwrite64");
	return shim(real, fd, buf, n, off);
}
