/*
 * labcommon.h - small helpers shared by the lab's guest programs: a streaming
 * JSON emitter for stdout (one object per run, built without a tree), number
 * parsing with k/m/g suffixes, and the splitmix64 finaliser.
 *
 * Everything is static inline so that a program using only part of it
 * compiles without unused-function warnings.
 */
#ifndef LABCOMMON_H
#define LABCOMMON_H

#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ JSON */

/* Remembers "first element at this depth" so commas come out right. */
static int lc_jdepth, lc_jfirst[32] = {1}, lc_jafterkey;

static inline void jsep(void)
{
	if (lc_jafterkey)
		lc_jafterkey = 0;
	else if (!lc_jfirst[lc_jdepth])
		putchar(',');
	lc_jfirst[lc_jdepth] = 0;
}

/* Any byte string becomes valid JSON: controls and non-ASCII as \u00XX. */
static inline void jstr_raw(const char *s)
{
	putchar('"');
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (*p == '"' || *p == '\\')
			printf("\\%c", *p);
		else if (*p < 0x20 || *p >= 0x7f)
			printf("\\u%04x", *p);
		else
			putchar(*p);
	}
	putchar('"');
}

static inline void jkey(const char *k)
{
	jsep();
	jstr_raw(k);
	putchar(':');
	lc_jafterkey = 1;
}

/* jopen("name", '{') inside an object, jopen(NULL, '[') inside an array. */
static inline void jopen(const char *k, char c)
{
	if (k)
		jkey(k);
	jsep();
	putchar(c);
	lc_jfirst[++lc_jdepth] = 1;
}

static inline void jclose(char c)
{
	putchar(c);
	lc_jdepth--;
}

static inline void kint(const char *k, long long v)
{
	if (k)
		jkey(k);
	jsep();
	printf("%lld", v);
}

static inline void kuint(const char *k, unsigned long long v)
{
	if (k)
		jkey(k);
	jsep();
	printf("%llu", v);
}

static inline void kdouble(const char *k, double v)
{
	if (k)
		jkey(k);
	jsep();
	printf("%.3f", v);
}

static inline void kbool(const char *k, int v)
{
	if (k)
		jkey(k);
	jsep();
	fputs(v ? "true" : "false", stdout);
}

/* NULL => null */
static inline void kstr(const char *k, const char *s)
{
	if (k)
		jkey(k);
	jsep();
	if (s)
		jstr_raw(s);
	else
		fputs("null", stdout);
}

static inline void knull(const char *k)
{
	kstr(k, NULL);
}

/* ---------------------------------------------------------------- numbers */

/* Decimal or 0x hex with an optional k/m/g (x1024) suffix; 0 on success. */
static inline int parse_u64(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;
	int sh;

	if (!*s || *s == '-' || *s == '+')
		return -1;
	errno = 0;
	v = strtoull(s, &end, 0);
	sh = *end == 'k' || *end == 'K' ? 10 : *end == 'm' || *end == 'M' ? 20 :
	     *end == 'g' || *end == 'G' ? 30 : 0;
	if (errno || end == s || end[!!sh] || (sh && v >> (64 - sh)))
		return -1;
	*out = (uint64_t)v << sh;
	return 0;
}

/* A non-negative decimal, e.g. seconds: "5", "0.5". */
static inline int parse_seconds(const char *s, double *out)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno || end == s || *end || !(v >= 0) || v > 1e7)
		return -1;
	*out = v;
	return 0;
}

/* -------------------------------------------------------------- hashing */

#define LC_GOLD 0x9e3779b97f4a7c15ULL

static inline uint64_t mix64(uint64_t z)
{
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

#endif
