/*
 * labfsx - a reproducible randomized concurrent file-system exerciser.
 *
 * kernel-lab runs it on a labfs FUSE mount to ask "does the patch break
 * anything else?"; it works on any directory.  --threads threads run seeded
 * random operations on --files shared files and every result is checked
 * against a model.  One JSON object on stdout; exit 0 = every check passed,
 * 1 = a mismatch, an unexpected error or a hang (the JSON says which, stderr
 * has the human report), 2 = usage, 3 = set-up failure.  Usage: see USAGE.
 *
 * Operations: pwrite and pread on plain and O_DIRECT fds (on labfs every
 * open is FOPEN_DIRECT_IO, so plain fds are direct too), mmap reads, writes
 * racing on shared blocks and reads racing them, O_APPEND writes, truncates
 * that grow and shrink, writes that extend the file past a hole, fallocate
 * (punch hole, zero range, keep-size and size-extending allocation), fsync
 * and fdatasync.
 *
 * Reproducible: thread t draws from xoshiro256** seeded with (seed, t),
 * five draws per operation whatever the operation, so the same seed and
 * options give every thread the same operation stream.  Only what depends
 * on timing (which racing write wins, where an append lands, the tail's size
 * when a tail operation runs) is resolved at run time.
 *
 * File layout, T threads, R = --region, S = --shared:
 *   [0, T*R)          private regions: thread t alone writes [t*R, (t+1)*R)
 *   [T*R, F=T*R+S)    shared region, 4 KiB blocks that every thread writes
 *   [F, size)         tail: appends, truncates, extending writes/fallocate
 * Files are created with size F; nothing sets the size below F.
 *
 * Data: every byte is a function of (writer, op, absolute offset).  The
 * 16-byte unit at offset u holds u (8 bytes), op number (4), thread+1 (2),
 * file<<4|kind (1) and a check byte keyed by the seed, so a torn, lost,
 * duplicated, stale or misplaced write never looks like what the model
 * expects, and a hole (zeros) matches no write.  Appended records describe
 * themselves instead (the kernel picks their offset): unit i of an n-unit
 * record holds i, n, op, thread, file and a 32-bit check.
 *
 * The model, and why a legal interleaving is never reported:
 *  - Private regions have one writer: the model is a byte-exact shadow;
 *    every read (pread, O_DIRECT, mmap) and every check must equal it.
 *  - Shared region: writes cover whole 4 KiB-aligned blocks from page-aligned
 *    buffers, so the kernel cuts them into FUSE requests at block boundaries
 *    and the server applies each request with one pwrite: a block is never
 *    a mix of two writes, though the blocks of one write may end up from
 *    different writers.  Time runs in epochs of --epoch operations per
 *    thread, closed by a barrier.  At the barrier each block must equal one
 *    write of the epoch that covered it and that no other covering write
 *    followed (started after it had returned; a global counter taken before
 *    and after every write orders them), or its previous content if no
 *    write covered it.  A read racing writes may see each byte old or new,
 *    so racing reads are checked per byte: each byte must come from the
 *    block's content at the epoch's start or from a write of this epoch
 *    that covers it and had started before the read returned.
 *  - Tail: a reader-writer lock per file, in labfsx itself.  O_APPEND writes
 *    share it (the kernel must serialize them); truncate, extending writes
 *    and size-changing fallocate take it exclusively and first settle the
 *    appends: the bytes after the last known size must be exactly the
 *    records appended since, each once and intact, in any order, each ending
 *    where its writer's file position says, and the size must be the known
 *    size plus their lengths.  After an exclusive operation the size is
 *    known exactly and checked with fstat.
 *  - At each barrier the whole file is checked: private regions, shared
 *    blocks, appended records, tail bytes and size.
 *  - mmap: a fresh read-only MAP_SHARED mapping of a plain open; if refused
 *    (FUSE direct_io: ENODEV) MAP_PRIVATE; only the thread's own region is
 *    read (a FUSE direct-io mmap invalidates the page cache, so the mapping
 *    sees earlier direct writes).  SIGBUS while reading it is a failure.
 *  - Skipped and counted, never failed: an O_DIRECT open the file system
 *    refuses (EINVAL), a mapping refused both ways, an fallocate mode it
 *    does not support (EOPNOTSUPP).
 *  - Every other operation must succeed in full: an error or a short count
 *    is a failure (the lab's server injects neither unless asked).
 * Blind spots: corruption of a shared block that a later write of the same
 * epoch overwrote; for racing reads, anything finer than "each byte old or
 * new".
 *
 * --inject=KIND (debug, thread 0, once, at its first fitting op at or after
 * --inject-at) corrupts behind the model's back to show that the checks
 * catch it: flip (a byte after a private write), misplace (a private write
 * 64 bytes off), lose (a private write never issued), duplicate (an append
 * written twice), tear (half a shared block put back to its old content),
 * size (a truncate by one byte after an extending write).  The injecting
 * thread then idles until the barrier so that it does not overwrite its own
 * corruption.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "labcommon.h"

#define BLK 4096          /* shared-block size and O_DIRECT alignment */
#define MAXT 64
#define MAXF 8
#define MAXIO (64 * 1024) /* largest single I/O buffer */
#define PRIV_MAX 16384    /* largest private write/read */
#define SETTLE_MAX (16u << 20)

#define USAGE \
"usage: labfsx --dir=DIR [--seed=N] [--threads=N] [--files=N] [--duration=S]\n" \
"              [--max-ops=N] [--epoch=N] [--region=B] [--shared=B] [--tail=B]\n" \
"              [--ops=KIND,...] [--history=K] [--hang-timeout=S] [--keep]\n" \
"              [--inject=flip|misplace|lose|duplicate|tear|size [--inject-at=N]]\n" \
"kinds: write write-odirect read read-odirect mmap-read shared-write\n" \
"       shared-read append truncate extend fallocate fsync (default all)\n" \
"numbers: decimal or 0x hex, optional k/m/g (x1024) suffix; S in seconds\n"

enum kind { K_WRITE, K_WRITE_OD, K_READ, K_READ_OD, K_MMAP, K_SWRITE, K_SREAD,
	    K_APPEND, K_TRUNC, K_EXTEND, K_FALLOC, K_FSYNC, K_N, K_CHECK = K_N };
static const char *const kname[K_N + 1] = {
	"write", "write-odirect", "read", "read-odirect", "mmap-read",
	"shared-write", "shared-read", "append", "truncate", "extend",
	"fallocate", "fsync", "epoch-check" };
static const unsigned kweight[K_N] = {14, 10, 8, 6, 6, 14, 8, 10, 4, 4, 6, 4};

/* Unit kinds (low nibble of byte 14). */
enum { SIG_PRIV = 1, SIG_SHARED = 2, SIG_EXTEND = 3, SIG_APPEND = 4 };
#define REC_MAGIC 0xA5

enum { INJ_NONE, INJ_FLIP, INJ_MISPLACE, INJ_LOSE, INJ_DUP, INJ_TEAR, INJ_SIZE };
static const char *const injname[] = {
	"", "flip", "misplace", "lose", "duplicate", "tear", "size" };
static const int injkind[] = {
	-1, K_WRITE, K_WRITE, K_WRITE, K_APPEND, K_SWRITE, K_EXTEND };

static const char *const fallocname[] = {
	"punch-hole", "zero-range", "keep-size", "extend" };

static struct {
	const char *dir;
	uint64_t seed, threads, files, epoch, history, region, shared, tail;
	uint64_t max_ops, inject_at;
	double duration, hang_timeout;
	unsigned kinds;
	int inject, keep;
	char ops_text[256];
} opt = {
	.seed = 1, .threads = 4, .files = 2, .epoch = 32, .history = 16,
	.region = 64 * 1024, .shared = 64 * 1024, .tail = 128 * 1024,
	.duration = 5, .hang_timeout = 120, .kinds = (1u << K_N) - 1,
	.ops_text = "all",
};

static uint64_t SH0, F0; /* shared region start, tail start */

/* ---------------------------------------------------------------- state */

struct pending {        /* an append the model has not placed yet */
	unsigned thread;
	uint32_t op, len;
	uint64_t end;   /* the appender's file position after the write */
	int64_t seen_at;
};

struct fmodel {
	char path[4096];
	pthread_rwlock_t tail_lock;
	pthread_mutex_t pend_mtx;
	uint64_t size;          /* known size; pending appends come after it */
	uint8_t *tail;          /* shadow of [F0, size) */
	size_t tail_cap;
	struct pending *pend;
	size_t npend, pend_cap;
	uint64_t pend_bytes;
	uint8_t *shared;        /* shadow of the shared region */
	int created;
};

struct swrite {         /* a shared write of this epoch */
	unsigned file, thread;
	uint32_t op;
	uint64_t off, len, start;
	_Atomic uint64_t end; /* 0 while in flight */
};

struct hist {
	uint32_t op;
	int kind, file, busy;
	const char *sub;
	int64_t off, len, ret;
	int err;
};

struct thr {
	unsigned id;
	pthread_t th;
	uint64_t s[4];
	uint32_t op;
	int fd[MAXF], dfd[MAXF], afd[MAXF];
	uint8_t *buf, *buf2, *chk;
	uint8_t *priv[MAXF];
	struct hist *hist;
	uint64_t nhist;
	struct swrite *log;
	_Atomic unsigned nlog;
	uint64_t done[K_N], skipped[K_N], bytes_w, bytes_r;
	double busy_s[K_N + 1]; /* time in each kind of op, and in the checks */
	int idle;
};

struct failure {
	int set;
	const char *type;       /* mismatch, error, hang */
	unsigned thread;
	uint32_t op;
	int kind, file;
	char what[1024];
	int64_t off;            /* first bad offset, -1 if none */
	uint64_t win;           /* offset of the bytes shown */
	int nwin;
	uint8_t exp[32], act[32];
	char exp_desc[200], act_desc[200];
};

static struct fmodel fm[MAXF];
static struct thr thr[MAXT];
static pthread_barrier_t bar;
static atomic_int stop;
static _Atomic uint64_t seq = 1, progress;
static int go = 1;
static uint64_t epochs;
static struct failure failure;
static pthread_mutex_t fail_mtx = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t out_mtx = PTHREAD_MUTEX_INITIALIZER;
static struct timespec t_start;
static double elapsed_s;
static _Atomic uint64_t mmap_shared_refused, falloc_unsupported[4];
static int odirect_errno;
static struct { int done; uint32_t op; uint64_t off; } injected;
static char reproduce[2048];
static __thread sigjmp_buf *bus_jb;

static double now_s(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (t.tv_sec - t_start.tv_sec) + (t.tv_nsec - t_start.tv_nsec) / 1e9;
}

static void __attribute__((noreturn, format(printf, 1, 2))) usage(const char *fmt, ...)
{
	va_list ap;

	fputs("labfsx: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs("\n" USAGE, stderr);
	exit(2);
}

static void *xalloc(size_t n)
{
	void *p;

	if (posix_memalign(&p, BLK, n ? (n + BLK - 1) / BLK * BLK : BLK)) {
		fputs("labfsx: out of memory\n", stderr);
		exit(3);
	}
	return memset(p, 0, n ? (n + BLK - 1) / BLK * BLK : BLK);
}

/* ------------------------------------------------------------- patterns */

static inline void put16(uint8_t *p, uint16_t v) { memcpy(p, &v, 2); }
static inline void put32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static inline void put64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }
static inline uint16_t get16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return v; }
static inline uint32_t get32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static inline uint64_t get64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }

static uint8_t unit_check(const uint8_t *u)
{
	return (uint8_t)mix64(opt.seed * LC_GOLD ^ get64(u) ^ ((uint64_t)get32(u + 8) << 8) ^
			      ((uint64_t)get16(u + 12) << 40) ^ ((uint64_t)u[14] << 56));
}

static void unit_sig(uint8_t *u, uint64_t uoff, uint32_t op, unsigned th, unsigned file,
		     unsigned kind)
{
	put64(u, uoff);
	put32(u + 8, op);
	put16(u + 12, (uint16_t)(th + 1));
	u[14] = (uint8_t)(file << 4 | kind);
	u[15] = unit_check(u);
}

/* The bytes [off, off+len) of a write (op, thread, file, kind). */
static void fill(uint8_t *buf, uint64_t off, size_t len, uint32_t op, unsigned th,
		 unsigned file, unsigned kind)
{
	uint8_t u[16];
	size_t i = 0;

	while (i < len) {
		uint64_t p = off + i, uo = p & ~15ULL;
		size_t k = p - uo, n = 16 - k;

		if (n > len - i)
			n = len - i;
		unit_sig(u, uo, op, th, file, kind);
		memcpy(buf + i, u + k, n);
		i += n;
	}
}

static uint32_t rec_check(const uint8_t *u)
{
	return (uint32_t)mix64(opt.seed * LC_GOLD ^ get64(u) ^ ((uint64_t)get32(u + 8) << 17));
}

static void rec_fill(uint8_t *buf, unsigned n, uint32_t op, unsigned th, unsigned file)
{
	for (unsigned i = 0; i < n; i++) {
		uint8_t *u = buf + 16 * i;

		put16(u, (uint16_t)i);
		put16(u + 2, (uint16_t)n);
		put32(u + 4, op);
		put16(u + 8, (uint16_t)(th + 1));
		u[10] = (uint8_t)(file << 4 | SIG_APPEND);
		u[11] = REC_MAGIC;
		put32(u + 12, rec_check(u));
	}
}

/* What a 16-byte unit found at offset `at` is, in words. */
static void describe(char *out, size_t n, const uint8_t *u, uint64_t at)
{
	static const uint8_t zero[16];
	static const char *const what[] = {"?", "private", "shared", "extending", "append"};

	if (!memcmp(u, zero, 16)) {
		snprintf(out, n, "zeros (a hole or never written)");
	} else if (u[11] == REC_MAGIC && (u[10] & 15) == SIG_APPEND &&
		   get32(u + 12) == rec_check(u)) {
		snprintf(out, n, "unit %u of %u of the record thread %u appended as op %u (file %u)",
			 get16(u), get16(u + 2), get16(u + 8) - 1u, get32(u + 4), u[10] >> 4);
	} else if (u[15] == unit_check(u) && (u[14] & 15) >= SIG_PRIV &&
		   (u[14] & 15) <= SIG_EXTEND) {
		uint64_t meant = get64(u);
		int n2 = snprintf(out, n, "%s write by thread %u op %u (file %u) meant for offset %llu",
				  what[u[14] & 15], get16(u + 12) - 1u, get32(u + 8), u[14] >> 4,
				  (unsigned long long)meant);
		if (meant != at && n2 > 0 && (size_t)n2 < n)
			snprintf(out + n2, n - n2, " (misplaced by %lld)",
				 (long long)at - (long long)meant);
	} else {
		snprintf(out, n, "bytes labfsx never wrote as a whole (torn or foreign)");
	}
}

/* ------------------------------------------------------------- failures */

static struct failure *fail_begin(struct thr *t, int kind, int file, const char *type)
{
	pthread_mutex_lock(&fail_mtx);
	if (failure.set) {
		pthread_mutex_unlock(&fail_mtx);
		return NULL;
	}
	failure.set = 1;
	failure.type = type;
	failure.thread = t->id;
	failure.op = kind == K_CHECK ? 0 : t->op;
	failure.kind = kind;
	failure.file = file;
	failure.off = -1;
	return &failure;
}

static void fail_end(void)
{
	atomic_store(&stop, 1);
	pthread_mutex_unlock(&fail_mtx);
}

static void __attribute__((format(printf, 4, 5)))
fail_msg(struct thr *t, int kind, int file, const char *fmt, ...)
{
	struct failure *f = fail_begin(t, kind, file, "mismatch");
	va_list ap;

	if (!f)
		return;
	va_start(ap, fmt);
	vsnprintf(f->what, sizeof(f->what), fmt, ap);
	va_end(ap);
	fail_end();
}

/* An operation returned an error or a short count. */
static void fail_io(struct thr *t, int kind, int file, const char *call, uint64_t off,
		    uint64_t len, long long ret, int err)
{
	struct failure *f = fail_begin(t, kind, file, "error");

	if (!f)
		return;
	if (ret < 0)
		snprintf(f->what, sizeof(f->what), "%s(offset %llu, length %llu) failed: %s (%s)",
			 call, (unsigned long long)off, (unsigned long long)len,
			 strerrorname_np(err) ? strerrorname_np(err) : "?", strerror(err));
	else
		snprintf(f->what, sizeof(f->what),
			 "%s(offset %llu, length %llu) returned %lld, expected all of it", call,
			 (unsigned long long)off, (unsigned long long)len, ret);
	fail_end();
}

/* exp and act hold len bytes for file offset base; the first bad offset is
 * bad_off, or where they first differ when bad_off is UINT64_MAX. */
static void __attribute__((format(printf, 9, 10)))
fail_bytes(struct thr *t, int kind, int file, uint64_t base, const uint8_t *exp,
	   const uint8_t *act, size_t len, uint64_t bad_off, const char *fmt, ...)
{
	struct failure *f;
	va_list ap;
	size_t i = bad_off - base;

	if (bad_off == UINT64_MAX) {
		for (i = 0; i < len && exp[i] == act[i]; i++)
			;
		if (i == len)
			i = 0;
	}
	f = fail_begin(t, kind, file, "mismatch");
	if (!f)
		return;
	va_start(ap, fmt);
	vsnprintf(f->what, sizeof(f->what), fmt, ap);
	va_end(ap);
	f->off = (int64_t)(base + i);
	{
		uint64_t uo = (base + i) & ~15ULL, ws = uo < base ? base : uo;
		size_t n = base + len - ws;

		f->win = ws;
		f->nwin = (int)(n < 32 ? n : 32);
		memcpy(f->exp, exp + (ws - base), f->nwin);
		memcpy(f->act, act + (ws - base), f->nwin);
		if (uo >= base && uo + 16 <= base + len) {
			describe(f->exp_desc, sizeof(f->exp_desc), exp + (uo - base), uo);
			describe(f->act_desc, sizeof(f->act_desc), act + (uo - base), uo);
		}
	}
	fail_end();
}

static int failed(void)
{
	return atomic_load_explicit(&stop, memory_order_relaxed);
}

/* -------------------------------------------------------------- history */

static struct hist *hist_start(struct thr *t, int kind, int file, const char *sub,
			       uint64_t off, uint64_t len)
{
	struct hist *h = &t->hist[t->nhist++ % opt.history];

	*h = (struct hist){.op = t->op, .kind = kind, .file = file, .sub = sub, .busy = 1,
			   .off = (int64_t)off, .len = (int64_t)len};
	return h;
}

static void hist_end(struct hist *h, long long ret, int err)
{
	h->ret = ret;
	h->err = ret < 0 ? err : 0;
	h->busy = 0;
	atomic_fetch_add_explicit(&progress, 1, memory_order_relaxed);
}

/* ------------------------------------------------------------ utilities */

static uint64_t rnd(struct thr *t)
{
	uint64_t *s = t->s, r = ((s[1] * 5) << 7 | (s[1] * 5) >> 57) * 9, x = s[1] << 17;

	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= x;
	s[3] = s[3] << 45 | s[3] >> 19;
	return r;
}

static ssize_t pread_full(int fd, uint8_t *buf, size_t len, uint64_t off)
{
	size_t done = 0;

	while (done < len) {
		ssize_t r = pread(fd, buf + done, len - done, (off_t)(off + done));

		if (r < 0)
			return done ? (ssize_t)done : -1;
		if (r == 0)
			break;
		done += (size_t)r;
	}
	return (ssize_t)done;
}

static uint64_t min64(uint64_t a, uint64_t b) { return a < b ? a : b; }

static void tail_reserve(struct fmodel *m, uint64_t size)
{
	size_t need = size - F0;

	if (need <= m->tail_cap)
		return;
	size_t cap = m->tail_cap ? m->tail_cap : BLK;
	while (cap < need)
		cap *= 2;
	m->tail = realloc(m->tail, cap);
	if (!m->tail) {
		fputs("labfsx: out of memory\n", stderr);
		_exit(3);
	}
	m->tail_cap = cap;
}

/* The model's size moves to `size`; new bytes are zeros. */
static void tail_resize(struct fmodel *m, uint64_t size)
{
	tail_reserve(m, size);
	if (size > m->size)
		memset(m->tail + (m->size - F0), 0, size - m->size);
	m->size = size;
}

static int size_is(struct thr *t, int kind, unsigned f, uint64_t want, const char *after)
{
	struct stat st;

	if (fstat(t->fd[f], &st)) {
		fail_io(t, kind, f, "fstat", 0, 0, -1, errno);
		return 0;
	}
	if ((uint64_t)st.st_size != want) {
		fail_msg(t, kind, f, "size after %s is %lld, the model says %llu", after,
			 (long long)st.st_size, (unsigned long long)want);
		return 0;
	}
	return 1;
}

/* ----------------------------------------------------- appends (settle) */

/*
 * The bytes after the known size must be exactly the pending records, each
 * once, intact, ending where its writer's file position said.  Caller holds
 * the tail lock exclusively (or all threads are at the barrier).  Returns 0
 * after reporting a failure.
 */
static int settle(struct thr *t, int kind, unsigned f)
{
	struct fmodel *m = &fm[f];
	uint64_t expect = m->size + m->pend_bytes, avail, p = 0;
	struct stat st;
	uint8_t *buf;
	ssize_t r;
	int ok = 0;

	if (fstat(t->fd[f], &st)) {
		fail_io(t, kind, f, "fstat", 0, 0, -1, errno);
		return 0;
	}
	if ((uint64_t)st.st_size < m->size) {
		fail_msg(t, kind, f, "size is %lld, below the %llu the model knows (%zu appends "
			 "pending)", (long long)st.st_size, (unsigned long long)m->size, m->npend);
		return 0;
	}
	avail = min64((uint64_t)st.st_size - m->size, SETTLE_MAX);
	buf = xalloc(avail + 16);
	r = pread_full(t->fd[f], buf, avail, m->size);
	if (r < 0 || (uint64_t)r != avail) {
		fail_io(t, kind, f, "pread", m->size, avail, r, errno);
		goto out;
	}
	for (size_t i = 0; i < m->npend; i++)
		m->pend[i].seen_at = -1;
	while (p < m->pend_bytes) {
		uint64_t at = m->size + p;
		const uint8_t *u = buf + p;
		struct pending *pd = NULL;
		char d[200];

		if (p + 16 > avail) {
			fail_msg(t, kind, f, "the file ends at %llu, inside the appended records "
				 "(%zu records, %llu bytes, appended after offset %llu)",
				 (unsigned long long)(m->size + avail), m->npend,
				 (unsigned long long)m->pend_bytes, (unsigned long long)m->size);
			goto out;
		}
		if (u[11] == REC_MAGIC && (u[10] & 15) == SIG_APPEND && get32(u + 12) == rec_check(u) &&
		    get16(u) == 0 && (u[10] >> 4) == f)
			for (size_t i = 0; i < m->npend; i++)
				if (m->pend[i].thread + 1 == get16(u + 8) &&
				    m->pend[i].op == get32(u + 4))
					pd = &m->pend[i];
		if (!pd || pd->seen_at >= 0 || pd->len != 16u * get16(u + 2)) {
			struct failure *fl;

			describe(d, sizeof(d), u, at);
			fl = fail_begin(t, kind, f, "mismatch");
			if (!fl)
				goto out;
			if (pd && pd->seen_at >= 0)
				snprintf(fl->what, sizeof(fl->what), "the record thread %u appended as "
					 "op %u appears twice, at %lld and at %llu", pd->thread, pd->op,
					 (long long)pd->seen_at, (unsigned long long)at);
			else
				snprintf(fl->what, sizeof(fl->what), "offset %llu should start one of "
					 "the %zu records appended since size %llu, it holds %s",
					 (unsigned long long)at, m->npend,
					 (unsigned long long)m->size, d);
			fl->off = (int64_t)at;
			fl->win = at;
			fl->nwin = (int)min64(32, avail - p);
			memcpy(fl->act, u, fl->nwin);
			snprintf(fl->act_desc, sizeof(fl->act_desc), "%s", d);
			if (pd) {
				rec_fill(fl->exp, 2, pd->op, pd->thread, f);
				describe(fl->exp_desc, sizeof(fl->exp_desc), fl->exp, at);
			}
			fail_end();
			goto out;
		}
		if (p + pd->len > avail) {
			fail_msg(t, kind, f, "the record thread %u appended as op %u at %llu is cut "
				 "short: the file ends at %llu", pd->thread, pd->op,
				 (unsigned long long)at, (unsigned long long)(m->size + avail));
			goto out;
		}
		rec_fill(t->buf2, pd->len / 16, pd->op, pd->thread, f);
		if (memcmp(t->buf2, u, pd->len)) {
			fail_bytes(t, kind, f, at, t->buf2, u, pd->len, UINT64_MAX,
				   "the record thread %u appended as op %u (at %llu, %u bytes) is torn",
				   pd->thread, pd->op, (unsigned long long)at, pd->len);
			goto out;
		}
		if (pd->end != at + pd->len) {
			fail_msg(t, kind, f, "thread %u's file position after appending op %u is %llu, "
				 "but the record ends at %llu", pd->thread, pd->op,
				 (unsigned long long)pd->end, (unsigned long long)(at + pd->len));
			goto out;
		}
		pd->seen_at = (int64_t)at;
		p += pd->len;
	}
	if ((uint64_t)st.st_size != expect) {
		char d[200] = "";

		if ((uint64_t)st.st_size > expect && avail >= p + 16)
			describe(d, sizeof(d), buf + p, expect);
		fail_msg(t, kind, f, "size is %lld, expected %llu: known size %llu plus %zu appended "
			 "records (%llu bytes)%s%s", (long long)st.st_size, (unsigned long long)expect,
			 (unsigned long long)m->size, m->npend, (unsigned long long)m->pend_bytes,
			 *d ? "; the extra bytes hold " : "", d);
		goto out;
	}
	tail_reserve(m, expect);
	memcpy(m->tail + (m->size - F0), buf, m->pend_bytes);
	m->size = expect;
	m->npend = 0;
	m->pend_bytes = 0;
	ok = 1;
out:
	free(buf);
	return ok;
}

/* ----------------------------------------------------------- operations */

static void skip(struct thr *t, struct hist *h, int kind)
{
	t->skipped[kind]++;
	h->sub = "skipped";
	hist_end(h, 0, 0);
}

static int inject_now(struct thr *t, int kind)
{
	if (!opt.inject || injected.done || t->id != 0 || t->op < opt.inject_at ||
	    injkind[opt.inject] != kind)
		return 0;
	injected.done = 1;
	injected.op = t->op;
	t->idle = 1;
	return opt.inject;
}

/* A private offset/length: O_DIRECT ones block-aligned. */
static void priv_range(int od, uint64_t b, uint64_t c, uint64_t *off, uint64_t *len)
{
	if (od) {
		uint64_t nb = opt.region / BLK, b0 = b % nb;

		*off = b0 * BLK;
		*len = (1 + c % min64(4, nb - b0)) * BLK;
	} else {
		uint64_t max;

		*off = b % opt.region;
		max = min64(PRIV_MAX, opt.region - *off);
		/* mostly small, sometimes up to PRIV_MAX */
		*len = 1 + ((c & 1) ? (c >> 8) % min64(max, 512) : (c >> 8) % max);
	}
}

static void op_write(struct thr *t, int kind, unsigned f, uint64_t b, uint64_t c)
{
	int od = kind == K_WRITE_OD, fd = od ? t->dfd[f] : t->fd[f], inj;
	uint64_t base = t->id * opt.region, off, len, where;
	struct hist *h;
	ssize_t r;

	priv_range(od, b, c, &off, &len);
	h = hist_start(t, kind, f, NULL, base + off, len);
	if (fd < 0)
		return skip(t, h, kind);
	fill(t->buf, base + off, len, t->op, t->id, f, SIG_PRIV);
	inj = inject_now(t, kind);
	where = base + off;
	if (inj == INJ_MISPLACE)
		where = off + 64 + len <= opt.region ? where + 64 : where - min64(64, off);
	if (inj == INJ_LOSE) {
		r = (ssize_t)len;
	} else {
		r = pwrite(fd, t->buf, len, (off_t)where);
	}
	hist_end(h, r, errno);
	if (inj) {
		injected.off = where;
		h->sub = injname[inj];
	}
	if (r != (ssize_t)len)
		return fail_io(t, kind, f, "pwrite", base + off, len, r, errno);
	if (inj == INJ_FLIP) {
		uint8_t x = t->buf[len / 2] ^ 0x5a;

		injected.off = base + off + len / 2;
		if (pwrite(fd, &x, 1, (off_t)injected.off) != 1)
			return fail_io(t, kind, f, "pwrite (inject)", injected.off, 1, -1, errno);
	}
	memcpy(t->priv[f] + off, t->buf, len);
	t->done[kind]++;
	t->bytes_w += len;
}

static void op_read(struct thr *t, int kind, unsigned f, uint64_t b, uint64_t c)
{
	int od = kind == K_READ_OD, fd = od ? t->dfd[f] : t->fd[f];
	uint64_t base = t->id * opt.region, off, len;
	struct hist *h;
	ssize_t r;

	priv_range(od, b, c, &off, &len);
	h = hist_start(t, kind, f, NULL, base + off, len);
	if (fd < 0)
		return skip(t, h, kind);
	r = pread_full(fd, t->buf, len, base + off);
	hist_end(h, r, errno);
	if (r != (ssize_t)len)
		return fail_io(t, kind, f, "pread", base + off, len, r, errno);
	if (memcmp(t->buf, t->priv[f] + off, len))
		return fail_bytes(t, kind, f, base + off, t->priv[f] + off, t->buf, len, UINT64_MAX,
				  "%s of thread %u's private region differs from what it wrote",
				  kname[kind], t->id);
	t->done[kind]++;
	t->bytes_r += len;
}

static void on_sigbus(int sig)
{
	if (bus_jb)
		siglongjmp(*bus_jb, 1);
	signal(sig, SIG_DFL);
	raise(sig);
}

static void op_mmap(struct thr *t, unsigned f, uint64_t b, uint64_t c)
{
	uint64_t base = t->id * opt.region, off, len, abs, moff, mlen;
	long page = sysconf(_SC_PAGESIZE);
	/* volatile: still needed after a SIGBUS longjmp */
	const char *volatile how = "shared";
	struct hist *h;
	sigjmp_buf jb;
	uint8_t *volatile m;

	priv_range(0, b, c, &off, &len);
	abs = base + off;
	moff = abs & ~(uint64_t)(page - 1);
	mlen = abs + len - moff;
	h = hist_start(t, K_MMAP, f, NULL, abs, len);
	m = mmap(NULL, mlen, PROT_READ, MAP_SHARED, t->fd[f], (off_t)moff);
	if (m == MAP_FAILED && errno == ENODEV) {
		atomic_fetch_add(&mmap_shared_refused, 1);
		how = "private";
		m = mmap(NULL, mlen, PROT_READ, MAP_PRIVATE, t->fd[f], (off_t)moff);
	}
	if (m == MAP_FAILED) {
		int e = errno;

		if (e == ENODEV || e == EACCES || e == EINVAL || e == EOPNOTSUPP)
			return skip(t, h, K_MMAP);
		hist_end(h, -1, e);
		return fail_io(t, K_MMAP, f, "mmap", moff, mlen, -1, e);
	}
	h->sub = how;
	if (sigsetjmp(jb, 1)) {
		bus_jb = NULL;
		munmap(m, mlen);
		hist_end(h, -1, EFAULT);
		return fail_msg(t, K_MMAP, f, "SIGBUS reading a %s mapping of [%llu, %llu) "
				"(the model's size is at least %llu)", how, (unsigned long long)abs,
				(unsigned long long)(abs + len), (unsigned long long)F0);
	}
	bus_jb = &jb;
	memcpy(t->buf, m + (abs - moff), len);
	bus_jb = NULL;
	munmap(m, mlen);
	hist_end(h, (long long)len, 0);
	if (memcmp(t->buf, t->priv[f] + off, len))
		return fail_bytes(t, K_MMAP, f, abs, t->priv[f] + off, t->buf, len, UINT64_MAX,
				  "a %s mapping of thread %u's private region differs from what "
				  "it wrote", how, t->id);
	t->done[K_MMAP]++;
	t->bytes_r += len;
}

static void shared_range(unsigned f, uint64_t b, uint64_t c, uint64_t *off, uint64_t *len)
{
	uint64_t nb = opt.shared / BLK, b0 = b % nb;

	(void)f;
	*off = SH0 + b0 * BLK;
	*len = (1 + c % min64(4, nb - b0)) * BLK;
}

static void op_swrite(struct thr *t, unsigned f, uint64_t b, uint64_t c, uint64_t d)
{
	int od = (d & 1) && t->dfd[f] >= 0, fd = od ? t->dfd[f] : t->fd[f], inj;
	uint64_t off, len;
	unsigned idx = atomic_load_explicit(&t->nlog, memory_order_relaxed);
	struct swrite *e = &t->log[idx];
	struct hist *h;
	ssize_t r;

	shared_range(f, b, c, &off, &len);
	h = hist_start(t, K_SWRITE, f, od ? "odirect" : "plain", off, len);
	fill(t->buf, off, len, t->op, t->id, f, SIG_SHARED);
	e->file = f;
	e->thread = t->id;
	e->op = t->op;
	e->off = off;
	e->len = len;
	atomic_store_explicit(&e->end, 0, memory_order_relaxed);
	e->start = atomic_fetch_add(&seq, 1);
	/* published before the write is issued: a racing reader sees it */
	atomic_store_explicit(&t->nlog, idx + 1, memory_order_release);
	r = pwrite(fd, t->buf, len, (off_t)off);
	atomic_store(&e->end, atomic_fetch_add(&seq, 1));
	hist_end(h, r, errno);
	if (r != (ssize_t)len)
		return fail_io(t, K_SWRITE, f, "pwrite", off, len, r, errno);
	inj = inject_now(t, K_SWRITE);
	if (inj == INJ_TEAR) {
		/* second half of the first block back to its old content */
		injected.off = off + BLK / 2;
		h->sub = "tear";
		if (pwrite(t->fd[f], fm[f].shared + (off - SH0) + BLK / 2, BLK / 2,
			   (off_t)injected.off) != BLK / 2)
			return fail_io(t, K_SWRITE, f, "pwrite (inject)", injected.off, BLK / 2, -1,
				       errno);
	}
	t->done[K_SWRITE]++;
	t->bytes_w += len;
}

/* Shared writes of this epoch in file f overlapping [off, off+len). */
static size_t candidates(unsigned f, uint64_t off, uint64_t len, struct swrite **out,
			 size_t max)
{
	size_t n = 0;

	for (unsigned j = 0; j < opt.threads; j++) {
		unsigned cnt = atomic_load_explicit(&thr[j].nlog, memory_order_acquire);

		for (unsigned i = 0; i < cnt && n < max; i++) {
			struct swrite *e = &thr[j].log[i];

			if (e->file == f && e->off < off + len && off < e->off + e->len)
				out[n++] = e;
		}
	}
	return n;
}

static void op_sread(struct thr *t, unsigned f, uint64_t b, uint64_t c, uint64_t d)
{
	int od = (d & 1) && t->dfd[f] >= 0, fd = od ? t->dfd[f] : t->fd[f];
	size_t max = opt.threads * opt.epoch, nc;
	struct swrite **cand = malloc(max * sizeof(*cand));
	const uint8_t *old;
	uint64_t off, len;
	struct hist *h;
	ssize_t r;

	shared_range(f, b, c, &off, &len);
	h = hist_start(t, K_SREAD, f, od ? "odirect" : "plain", off, len);
	r = pread_full(fd, t->buf, len, off);
	hist_end(h, r, errno);
	if (r != (ssize_t)len) {
		free(cand);
		return fail_io(t, K_SREAD, f, "pread", off, len, r, errno);
	}
	nc = candidates(f, off, len, cand, max);
	old = fm[f].shared + (off - SH0);
	for (uint64_t u = 0; u < len; u += 16) {
		uint64_t at = off + u;
		uint8_t gen[16];
		int ok = !memcmp(t->buf + u, old + u, 16);

		for (size_t i = 0; i < nc && !ok; i++) {
			if (cand[i]->off > at || at >= cand[i]->off + cand[i]->len)
				continue;
			unit_sig(gen, at, cand[i]->op, cand[i]->thread, f, SIG_SHARED);
			ok = !memcmp(t->buf + u, gen, 16);
		}
		for (int k = 0; k < 16 && !ok; k++) {   /* byte by byte: old or new */
			int bok = t->buf[u + k] == old[u + k];

			for (size_t i = 0; i < nc && !bok; i++) {
				if (cand[i]->off > at || at >= cand[i]->off + cand[i]->len)
					continue;
				unit_sig(gen, at, cand[i]->op, cand[i]->thread, f, SIG_SHARED);
				bok = t->buf[u + k] == gen[k];
			}
			if (!bok) {
				fail_bytes(t, K_SREAD, f, off, old, t->buf, len, at + k,
					   "a read racing shared writes returned a byte at %llu that "
					   "neither the block's old content nor any of the %zu writes "
					   "of this epoch overlapping it put there (expected shows the "
					   "old content)", (unsigned long long)(at + k), nc);
				free(cand);
				return;
			}
		}
	}
	free(cand);
	t->done[K_SREAD]++;
	t->bytes_r += len;
}

static void op_append(struct thr *t, unsigned f, uint64_t c)
{
	struct fmodel *m = &fm[f];
	unsigned units = 1 + ((c & 3) == 0 ? (c >> 8) % 256 : (c >> 8) % 32);
	uint64_t len = 16ull * units;
	struct hist *h = hist_start(t, K_APPEND, f, NULL, -1, len);
	off_t end;
	ssize_t r;
	int inj;

	rec_fill(t->buf, units, t->op, t->id, f);
	pthread_rwlock_rdlock(&m->tail_lock);
	r = write(t->afd[f], t->buf, len);
	end = lseek(t->afd[f], 0, SEEK_CUR);
	hist_end(h, r, errno);
	h->off = end - (off_t)len;
	if (r != (ssize_t)len) {
		pthread_rwlock_unlock(&m->tail_lock);
		return fail_io(t, K_APPEND, f, "write (O_APPEND)", -1, len, r, errno);
	}
	inj = inject_now(t, K_APPEND);
	if (inj == INJ_DUP) {
		h->sub = "duplicate";
		injected.off = end;
		if (write(t->afd[f], t->buf, len) != (ssize_t)len) {
			pthread_rwlock_unlock(&m->tail_lock);
			return fail_io(t, K_APPEND, f, "write (inject)", -1, len, -1, errno);
		}
	}
	pthread_mutex_lock(&m->pend_mtx);
	if (m->npend == m->pend_cap) {
		m->pend_cap = m->pend_cap ? 2 * m->pend_cap : 64;
		m->pend = realloc(m->pend, m->pend_cap * sizeof(*m->pend));
		if (!m->pend)
			abort();
	}
	m->pend[m->npend++] = (struct pending){.thread = t->id, .op = t->op, .len = (uint32_t)len,
					       .end = (uint64_t)end};
	m->pend_bytes += len;
	pthread_mutex_unlock(&m->pend_mtx);
	pthread_rwlock_unlock(&m->tail_lock);
	t->done[K_APPEND]++;
	t->bytes_w += len;
}

static void op_truncate(struct thr *t, unsigned f, uint64_t b)
{
	struct fmodel *m = &fm[f];
	uint64_t to = F0 + b % (opt.tail + 1);
	struct hist *h;
	int r;

	pthread_rwlock_wrlock(&m->tail_lock);
	h = hist_start(t, K_TRUNC, f, NULL, to, 0);
	if (!settle(t, K_TRUNC, f)) {
		hist_end(h, -1, 0);
		goto out;
	}
	h->sub = to > m->size ? "grow" : to < m->size ? "shrink" : "same";
	r = ftruncate(t->fd[f], (off_t)to);
	hist_end(h, r, errno);
	if (r) {
		fail_io(t, K_TRUNC, f, "ftruncate", to, 0, r, errno);
		goto out;
	}
	tail_resize(m, to);
	if (size_is(t, K_TRUNC, f, to, "ftruncate"))
		t->done[K_TRUNC]++;
out:
	pthread_rwlock_unlock(&m->tail_lock);
}

static void op_extend(struct thr *t, unsigned f, uint64_t b, uint64_t c, uint64_t d)
{
	struct fmodel *m = &fm[f];
	int od = (d & 1) && t->dfd[f] >= 0, fd = od ? t->dfd[f] : t->fd[f], inj;
	uint64_t off, len;
	struct hist *h;
	ssize_t r;

	pthread_rwlock_wrlock(&m->tail_lock);
	h = hist_start(t, K_EXTEND, f, od ? "odirect" : "plain", 0, 0);
	if (!settle(t, K_EXTEND, f)) {
		hist_end(h, -1, 0);
		goto out;
	}
	if (m->size > F0 + 2 * opt.tail) {
		/* keep the tail bounded: cut it first (part of this op) */
		uint64_t to = F0 + b % (opt.tail + 1);

		h->sub = od ? "odirect after a cut" : "plain after a cut";
		if (ftruncate(t->fd[f], (off_t)to)) {
			hist_end(h, -1, errno);
			fail_io(t, K_EXTEND, f, "ftruncate", to, 0, -1, errno);
			goto out;
		}
		tail_resize(m, to);
	}
	if (od) {
		off = (m->size + BLK - 1) / BLK * BLK + (b >> 32) % 2 * BLK;
		len = (1 + c % 4) * BLK;
	} else {
		off = m->size + (b >> 32) % 8192;
		len = 1 + c % 8192;
	}
	h->off = (int64_t)off;
	h->len = (int64_t)len;
	fill(t->buf, off, len, t->op, t->id, f, SIG_EXTEND);
	r = pwrite(fd, t->buf, len, (off_t)off);
	hist_end(h, r, errno);
	if (r != (ssize_t)len) {
		fail_io(t, K_EXTEND, f, "pwrite", off, len, r, errno);
		goto out;
	}
	tail_resize(m, off);
	tail_resize(m, off + len);
	memcpy(m->tail + (off - F0), t->buf, len);
	inj = inject_now(t, K_EXTEND);
	if (inj == INJ_SIZE) {
		h->sub = "size";
		injected.off = off + len - 1;
		if (ftruncate(t->fd[f], (off_t)(off + len - 1))) {
			fail_io(t, K_EXTEND, f, "ftruncate (inject)", off + len - 1, 0, -1, errno);
			goto out;
		}
	}
	if (inj || size_is(t, K_EXTEND, f, off + len, "an extending write"))
		t->done[K_EXTEND]++;
out:
	pthread_rwlock_unlock(&m->tail_lock);
}

static void op_fallocate(struct thr *t, unsigned f, uint64_t b, uint64_t c, uint64_t d)
{
	static const int modes[] = {FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
				    FALLOC_FL_ZERO_RANGE, FALLOC_FL_KEEP_SIZE, 0};
	unsigned sub = d % 4;
	uint64_t base = t->id * opt.region, off, len;
	struct fmodel *m = &fm[f];
	struct hist *h;
	int r;

	if (sub < 3) {
		off = b % opt.region;
		len = 1 + c % min64(PRIV_MAX, opt.region - off);
		h = hist_start(t, K_FALLOC, f, fallocname[sub], base + off, len);
		r = fallocate(t->fd[f], modes[sub], (off_t)(base + off), (off_t)len);
		hist_end(h, r, errno);
		if (r && (errno == EOPNOTSUPP || errno == ENOSYS)) {
			atomic_fetch_add(&falloc_unsupported[sub], 1);
			return skip(t, h, K_FALLOC);
		}
		if (r)
			return fail_io(t, K_FALLOC, f, fallocname[sub], base + off, len, r, errno);
		if (sub < 2)
			memset(t->priv[f] + off, 0, len);
		t->done[K_FALLOC]++;
		return;
	}
	pthread_rwlock_wrlock(&m->tail_lock);
	h = hist_start(t, K_FALLOC, f, fallocname[sub], 0, 0);
	if (!settle(t, K_FALLOC, f)) {
		hist_end(h, -1, 0);
		goto out;
	}
	off = F0 + b % (m->size - F0 + 8192);
	len = 1 + c % 16384;
	if (off + len > F0 + 3 * opt.tail)
		off = F0, len = min64(len, opt.tail);
	h->off = (int64_t)off;
	h->len = (int64_t)len;
	r = fallocate(t->fd[f], 0, (off_t)off, (off_t)len);
	hist_end(h, r, errno);
	if (r && (errno == EOPNOTSUPP || errno == ENOSYS)) {
		atomic_fetch_add(&falloc_unsupported[sub], 1);
		skip(t, h, K_FALLOC);
		goto out;
	}
	if (r) {
		fail_io(t, K_FALLOC, f, "fallocate", off, len, r, errno);
		goto out;
	}
	if (off + len > m->size)
		tail_resize(m, off + len);
	if (size_is(t, K_FALLOC, f, m->size, "fallocate"))
		t->done[K_FALLOC]++;
out:
	pthread_rwlock_unlock(&m->tail_lock);
}

static void op_fsync(struct thr *t, unsigned f, uint64_t d)
{
	int which = d % 3, fd = which == 0 ? t->fd[f] : which == 1 ? t->afd[f] : t->dfd[f];
	int data = (d >> 8) & 1, r;
	struct hist *h = hist_start(t, K_FSYNC, f, data ? "fdatasync" : "fsync", 0, 0);

	if (fd < 0)
		fd = t->fd[f];
	r = data ? fdatasync(fd) : fsync(fd);
	hist_end(h, r, errno);
	if (r)
		return fail_io(t, K_FSYNC, f, data ? "fdatasync" : "fsync", 0, 0, r, errno);
	t->done[K_FSYNC]++;
}

static int pick(uint64_t k)
{
	unsigned total = 0, x;

	for (int i = 0; i < K_N; i++)
		if (opt.kinds & (1u << i))
			total += kweight[i];
	x = (unsigned)(k % total);
	for (int i = 0; i < K_N; i++) {
		if (!(opt.kinds & (1u << i)))
			continue;
		if (x < kweight[i])
			return i;
		x -= kweight[i];
	}
	return K_FSYNC;
}

static void do_op(struct thr *t)
{
	/* five draws per op, always, so the stream does not depend on state */
	uint64_t k = rnd(t), a = rnd(t), b = rnd(t), c = rnd(t), d = rnd(t);
	int kind = pick(k);
	unsigned f = (unsigned)(a % opt.files);

	double t0 = now_s();

	t->op++;
	if (t->idle)
		return;
	switch (kind) {
	case K_WRITE:
	case K_WRITE_OD: op_write(t, kind, f, b, c); break;
	case K_READ:
	case K_READ_OD: op_read(t, kind, f, b, c); break;
	case K_MMAP: op_mmap(t, f, b, c); break;
	case K_SWRITE: op_swrite(t, f, b, c, d); break;
	case K_SREAD: op_sread(t, f, b, c, d); break;
	case K_APPEND: op_append(t, f, c); break;
	case K_TRUNC: op_truncate(t, f, b); break;
	case K_EXTEND: op_extend(t, f, b, c, d); break;
	case K_FALLOC: op_fallocate(t, f, b, c, d); break;
	default: op_fsync(t, f, d); break;
	}
	t->busy_s[kind] += now_s() - t0;
}

/* --------------------------------------------------------------- checks */

static void check_private(struct thr *t)
{
	for (unsigned f = 0; f < opt.files && !failed(); f++) {
		uint64_t base = t->id * opt.region;
		ssize_t r = pread_full(t->fd[f], t->chk, opt.region, base);

		if (r != (ssize_t)opt.region)
			return fail_io(t, K_CHECK, f, "pread", base, opt.region, r, errno);
		if (memcmp(t->chk, t->priv[f], opt.region))
			return fail_bytes(t, K_CHECK, f, base, t->priv[f], t->chk, opt.region,
					  UINT64_MAX, "at the end of epoch %llu thread %u's private "
					  "region differs from what it wrote",
					  (unsigned long long)epochs, t->id);
	}
}

static void check_shared(struct thr *t, unsigned f)
{
	size_t max = opt.threads * opt.epoch;
	struct swrite **cand = malloc(max * sizeof(*cand)), **latest = malloc(max * sizeof(*cand));
	uint8_t *gen = t->buf2;
	ssize_t r = pread_full(t->fd[f], t->chk, opt.shared, SH0);

	if (r != (ssize_t)opt.shared) {
		fail_io(t, K_CHECK, f, "pread", SH0, opt.shared, r, errno);
		goto out;
	}
	for (uint64_t blk = 0; blk < opt.shared / BLK; blk++) {
		uint64_t off = SH0 + blk * BLK;
		uint8_t *act = t->chk + blk * BLK, *old = fm[f].shared + blk * BLK;
		size_t nc = candidates(f, off, BLK, cand, max), nl = 0, i, j;

		if (!nc) {
			if (memcmp(act, old, BLK)) {
				fail_bytes(t, K_CHECK, f, off, old, act, BLK, UINT64_MAX,
					   "shared block %llu changed in epoch %llu though no write "
					   "covered it", (unsigned long long)blk,
					   (unsigned long long)epochs);
				goto out;
			}
			continue;
		}
		/* the writes no other covering write followed */
		for (i = 0; i < nc; i++) {
			for (j = 0; j < nc; j++)
				if (cand[i]->end < cand[j]->start)
					break;
			if (j == nc)
				latest[nl++] = cand[i];
		}
		for (i = 0; i < nl; i++) {
			fill(gen, off, BLK, latest[i]->op, latest[i]->thread, f, SIG_SHARED);
			if (!memcmp(gen, act, BLK))
				break;
		}
		if (i == nl) {
			char list[600] = "";
			size_t used = 0;
			struct swrite *last = latest[0];

			for (i = 0; i < nl && used < sizeof(list) - 40; i++) {
				used += snprintf(list + used, sizeof(list) - used, "%sthread %u op %u",
						 i ? ", " : "", latest[i]->thread, latest[i]->op);
				if (latest[i]->end > last->end)
					last = latest[i];
			}
			fill(gen, off, BLK, last->op, last->thread, f, SIG_SHARED);
			fail_bytes(t, K_CHECK, f, off, gen, act, BLK, UINT64_MAX,
				   "shared block %llu at the end of epoch %llu is none of the writes "
				   "that may have landed last (%s; %zu writes covered it); expected "
				   "shows the one that returned last", (unsigned long long)blk,
				   (unsigned long long)epochs, list, nc);
			goto out;
		}
		memcpy(old, act, BLK);
	}
out:
	free(cand);
	free(latest);
}

static void check_tail(struct thr *t, unsigned f)
{
	struct fmodel *m = &fm[f];
	uint64_t len = m->size - F0;
	uint8_t *buf;
	ssize_t r;

	if (!size_is(t, K_CHECK, f, m->size, "the epoch's appends"))
		return;
	buf = xalloc(len);
	r = pread_full(t->fd[f], buf, len, F0);
	if (r != (ssize_t)len)
		fail_io(t, K_CHECK, f, "pread", F0, len, r, errno);
	else if (memcmp(buf, m->tail, len))
		fail_bytes(t, K_CHECK, f, F0, m->tail, buf, len, UINT64_MAX,
			   "the tail [%llu, %llu) differs from the model at the end of epoch %llu",
			   (unsigned long long)F0, (unsigned long long)m->size,
			   (unsigned long long)epochs);
	free(buf);
}

static void *worker(void *arg)
{
	struct thr *t = arg;

	for (;;) {
		for (uint64_t i = 0; i < opt.epoch; i++)
			if (!failed())
				do_op(t);
		double t0;

		pthread_barrier_wait(&bar);
		t0 = now_s();
		if (!failed())
			check_private(t);
		if (t->id == 0) {
			for (unsigned f = 0; f < opt.files && !failed(); f++) {
				check_shared(t, f);
				if (!failed() && settle(t, K_CHECK, f))
					check_tail(t, f);
			}
			for (unsigned j = 0; j < opt.threads; j++)
				atomic_store(&thr[j].nlog, 0);
			epochs++;
			atomic_fetch_add(&progress, 1);
			go = !failed() && (!opt.duration || now_s() < opt.duration) &&
			     (!opt.max_ops || epochs * opt.epoch < opt.max_ops);
		}
		t->busy_s[K_CHECK] += now_s() - t0;
		pthread_barrier_wait(&bar);
		t->idle = 0;
		if (!go)
			return NULL;
	}
}

/* --------------------------------------------------------------- output */

static void hex(char *out, const uint8_t *p, int n)
{
	for (int i = 0; i < n; i++)
		sprintf(out + 3 * i, "%02x%s", p[i], i + 1 < n ? " " : "");
	if (n <= 0)
		*out = 0;
}

static const char *hist_ret(const struct hist *h, char *b, size_t n)
{
	if (h->busy)
		return "in flight";
	if (h->ret < 0)
		snprintf(b, n, "-1 %s", h->err && strerrorname_np(h->err) ?
			 strerrorname_np(h->err) : "");
	else
		snprintf(b, n, "%lld", (long long)h->ret);
	return b;
}

static void report_text(void)
{
	const struct failure *f = &failure;
	char a[100], b[100];

	fprintf(stderr, "labfsx: %s: %s\n", f->type, f->what);
	fprintf(stderr, "  reproduce: %s\n", reproduce);
	fprintf(stderr, "  thread %u, op %u (%s), file %d (%s)\n", f->thread, f->op,
		kname[f->kind], f->file, f->file >= 0 ? fm[f->file].path : "-");
	if (f->nwin > 0) {
		hex(a, f->exp, f->nwin);
		hex(b, f->act, f->nwin);
		fprintf(stderr, "  first bad offset %lld; %d bytes from %llu:\n"
			"    expected %s\n             %s\n    actual   %s\n             %s\n",
			(long long)f->off, f->nwin, (unsigned long long)f->win, a, f->exp_desc, b,
			f->act_desc);
	}
	fprintf(stderr, "  last %llu operations per thread (op kind file offset length -> "
		"result):\n", (unsigned long long)opt.history);
	for (unsigned i = 0; i < opt.threads; i++) {
		const struct thr *t = &thr[i];
		uint64_t from = t->nhist > opt.history ? t->nhist - opt.history : 0;

		fprintf(stderr, "   thread %u:\n", i);
		for (uint64_t k = from; k < t->nhist; k++) {
			const struct hist *h = &t->hist[k % opt.history];

			fprintf(stderr, "     #%u %s%s%s f%d %lld %lld -> %s\n", h->op, kname[h->kind],
				h->sub ? "/" : "", h->sub ? h->sub : "", h->file, (long long)h->off,
				(long long)h->len, hist_ret(h, a, sizeof(a)));
		}
	}
}

static void emit_json(const char *result)
{
	uint64_t total = 0, skipped = 0;
	char buf[128];

	jopen(NULL, '{');
	kstr("tool", "labfsx");
	kstr("result", result);
	kuint("seed", opt.seed);
	jopen("options", '{');
	kstr("dir", opt.dir);
	kuint("threads", opt.threads);
	kuint("files", opt.files);
	kdouble("duration_s", opt.duration);
	kuint("max_ops", opt.max_ops);
	kuint("epoch", opt.epoch);
	kuint("region", opt.region);
	kuint("shared", opt.shared);
	kuint("tail", opt.tail);
	kstr("ops", opt.ops_text);
	kstr("inject", opt.inject ? injname[opt.inject] : NULL);
	jclose('}');
	kstr("reproduce", reproduce);
	kdouble("elapsed_s", elapsed_s);
	kuint("epochs", epochs);
	jopen("kinds", '{');
	for (int k = 0; k < K_N; k++) {
		uint64_t d = 0, s = 0;
		double b = 0;

		for (unsigned i = 0; i < opt.threads; i++)
			d += thr[i].done[k], s += thr[i].skipped[k], b += thr[i].busy_s[k];
		total += d;
		skipped += s;
		jopen(kname[k], '{');
		kuint("done", d);
		kuint("skipped", s);
		kdouble("busy_s", b);
		jclose('}');
	}
	jclose('}');
	{
		double b = 0;

		for (unsigned i = 0; i < opt.threads; i++)
			b += thr[i].busy_s[K_CHECK];
		kdouble("check_busy_s", b); /* thread-seconds in the epochs' checks */
	}
	kuint("ops", total);
	kuint("skipped", skipped);
	kdouble("ops_per_s", elapsed_s > 0 ? total / elapsed_s : 0);
	{
		uint64_t w = 0, r = 0;

		for (unsigned i = 0; i < opt.threads; i++)
			w += thr[i].bytes_w, r += thr[i].bytes_r;
		kuint("bytes_written", w);
		kuint("bytes_read", r);
	}
	jopen("notes", '{');
	kuint("mmap_shared_refused", atomic_load(&mmap_shared_refused));
	kstr("odirect_open", odirect_errno ? strerrorname_np(odirect_errno) : "ok");
	jopen("fallocate_unsupported", '{');
	for (int i = 0; i < 4; i++)
		kuint(fallocname[i], atomic_load(&falloc_unsupported[i]));
	jclose('}');
	jclose('}');
	if (opt.inject && injected.done) {
		jopen("injected", '{');
		kstr("kind", injname[opt.inject]);
		kuint("op", injected.op);
		kuint("offset", injected.off);
		jclose('}');
	} else {
		knull("injected");
	}
	if (!failure.set) {
		knull("failure");
	} else {
		const struct failure *f = &failure;

		jopen("failure", '{');
		kstr("type", f->type);
		kstr("what", f->what);
		kuint("thread", f->thread);
		kuint("op", f->op);
		kstr("kind", kname[f->kind]);
		kint("file", f->file);
		kstr("path", f->file >= 0 ? fm[f->file].path : NULL);
		if (f->off >= 0)
			kint("offset", f->off);
		else
			knull("offset");
		if (f->nwin > 0) {
			char h[100];

			kuint("bytes_at", f->win);
			hex(h, f->exp, f->nwin);
			kstr("expected", h);
			kstr("expected_is", f->exp_desc[0] ? f->exp_desc : NULL);
			hex(h, f->act, f->nwin);
			kstr("actual", h);
			kstr("actual_is", f->act_desc[0] ? f->act_desc : NULL);
		}
		jclose('}');
		jopen("history", '{');
		for (unsigned i = 0; i < opt.threads; i++) {
			const struct thr *t = &thr[i];
			uint64_t from = t->nhist > opt.history ? t->nhist - opt.history : 0;

			snprintf(buf, sizeof(buf), "%u", i);
			jopen(buf, '[');
			for (uint64_t k = from; k < t->nhist; k++) {
				const struct hist *h = &t->hist[k % opt.history];
				char r[64];

				jopen(NULL, '{');
				kuint("op", h->op);
				kstr("kind", kname[h->kind]);
				kstr("sub", h->sub);
				kint("file", h->file);
				kint("offset", h->off);
				kint("length", h->len);
				kstr("result", hist_ret(h, r, sizeof(r)));
				jclose('}');
			}
			jclose(']');
		}
		jclose('}');
	}
	jclose('}');
	putchar('\n');
	fflush(stdout);
}

/* No operation finished for --hang-timeout seconds: report what was in
 * flight and exit (the stuck threads cannot be joined). */
static void *watchdog(void *arg)
{
	uint64_t last = (uint64_t)-1;
	double since = 0;

	(void)arg;
	for (;;) {
		uint64_t p = atomic_load(&progress);

		sleep(1);
		if (p != last) {
			last = p;
			since = now_s();
			continue;
		}
		if (now_s() - since < opt.hang_timeout)
			continue;
		pthread_mutex_lock(&fail_mtx);
		if (!failure.set) {
			failure.set = 1;
			failure.type = "hang";
			failure.kind = K_CHECK;
			failure.file = -1;
			failure.off = -1;
			snprintf(failure.what, sizeof(failure.what),
				 "no operation finished for %.0f s (see the operations in flight)",
				 opt.hang_timeout);
		}
		pthread_mutex_unlock(&fail_mtx);
		pthread_mutex_lock(&out_mtx);
		elapsed_s = now_s();
		emit_json("hang");
		report_text();
		_exit(1);
	}
	return NULL;
}

/* ------------------------------------------------------------- options */

static void parse_opts(int argc, char **argv)
{
	size_t used = snprintf(reproduce, sizeof(reproduce), "labfsx");

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *eq = strchr(a, '='), *v = eq ? eq + 1 : NULL;
		size_t nl = eq ? (size_t)(eq - a) : strlen(a);
		uint64_t *num = NULL;
		double *sec = NULL;

#define IS(s) (nl == strlen(s) && !strncmp(a, s, nl))
		if (strncmp(a, "--", 2))
			usage("unexpected argument '%s'", a);
		if (used < sizeof(reproduce))
			used += snprintf(reproduce + used, sizeof(reproduce) - used, " %s", a);
		if (IS("--keep")) {
			if (v)
				usage("--keep takes no value");
			opt.keep = 1;
			continue;
		}
		if (!v)
			usage("option '%s' needs =value", a);
		if (IS("--dir")) opt.dir = v;
		else if (IS("--seed")) num = &opt.seed;
		else if (IS("--threads")) num = &opt.threads;
		else if (IS("--files")) num = &opt.files;
		else if (IS("--epoch")) num = &opt.epoch;
		else if (IS("--history")) num = &opt.history;
		else if (IS("--region")) num = &opt.region;
		else if (IS("--shared")) num = &opt.shared;
		else if (IS("--tail")) num = &opt.tail;
		else if (IS("--max-ops")) num = &opt.max_ops;
		else if (IS("--inject-at")) num = &opt.inject_at;
		else if (IS("--duration")) sec = &opt.duration;
		else if (IS("--hang-timeout")) sec = &opt.hang_timeout;
		else if (IS("--inject")) {
			opt.inject = 0;
			for (int k = 1; k <= INJ_SIZE; k++)
				if (!strcmp(v, injname[k]))
					opt.inject = k;
			if (!opt.inject)
				usage("--inject: unknown kind '%s'", v);
		} else if (IS("--ops")) {
			char copy[256], *save, *tok;

			if (strlen(v) >= sizeof(copy))
				usage("--ops: too long");
			snprintf(opt.ops_text, sizeof(opt.ops_text), "%s", v);
			strcpy(copy, v);
			opt.kinds = 0;
			for (tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
				int k;

				if (!strcmp(tok, "all")) {
					opt.kinds = (1u << K_N) - 1;
					continue;
				}
				for (k = 0; k < K_N && strcmp(tok, kname[k]); k++)
					;
				if (k == K_N)
					usage("--ops: unknown kind '%s'", tok);
				opt.kinds |= 1u << k;
			}
			if (!opt.kinds)
				usage("--ops: no kind given");
		} else {
			usage("unknown option '%.*s'", (int)nl, a);
		}
		if (num && parse_u64(v, num))
			usage("%.*s: bad number '%s'", (int)nl, a, v);
		if (sec && parse_seconds(v, sec))
			usage("%.*s: bad number of seconds '%s'", (int)nl, a, v);
#undef IS
	}
	if (!opt.dir || !*opt.dir)
		usage("missing --dir");
	if (opt.threads < 1 || opt.threads > MAXT)
		usage("--threads must be 1..%d", MAXT);
	if (opt.files < 1 || opt.files > MAXF)
		usage("--files must be 1..%d", MAXF);
	if (opt.epoch < 1 || opt.epoch > 100000)
		usage("--epoch must be 1..100000");
	if (opt.history < 1 || opt.history > 10000)
		usage("--history must be 1..10000");
	if (opt.region < 4 * BLK || opt.region % BLK || opt.region > (256u << 20))
		usage("--region must be a multiple of %d, at least %d, at most 256m", BLK, 4 * BLK);
	if (opt.shared < BLK || opt.shared % BLK || opt.shared > (256u << 20))
		usage("--shared must be a multiple of %d, at most 256m", BLK);
	if (opt.tail < BLK || opt.tail > (64u << 20))
		usage("--tail must be %d..64m", BLK);
	if (!opt.duration && !opt.max_ops)
		usage("--duration=0 needs --max-ops");
	if (!opt.hang_timeout)
		usage("--hang-timeout must be more than 0");
	if (opt.inject && !(opt.kinds & (1u << injkind[opt.inject])))
		usage("--inject=%s needs --ops to include %s", injname[opt.inject],
		      kname[injkind[opt.inject]]);
}

/* ---------------------------------------------------------------- main */

static void __attribute__((noreturn, format(printf, 1, 2))) setup_fail(const char *fmt, ...)
{
	char msg[600];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fprintf(stderr, "labfsx: %s\n", msg);
	jopen(NULL, '{');
	kstr("tool", "labfsx");
	kstr("result", "error");
	kstr("error", msg);
	jclose('}');
	putchar('\n');
	exit(3);
}

int main(int argc, char **argv)
{
	pthread_t wd;
	int rc;

	parse_opts(argc, argv);
	SH0 = opt.threads * opt.region;
	F0 = SH0 + opt.shared;
	signal(SIGBUS, on_sigbus);

	for (unsigned f = 0; f < opt.files; f++) {
		struct fmodel *m = &fm[f];
		int fd;

		snprintf(m->path, sizeof(m->path), "%s/fsx.%llu.%u", opt.dir,
			 (unsigned long long)opt.seed, f);
		fd = open(m->path, O_RDWR | O_CREAT | O_TRUNC, 0644);
		if (fd < 0)
			setup_fail("create %s: %s", m->path, strerror(errno));
		m->created = 1;
		if (ftruncate(fd, (off_t)F0))
			setup_fail("ftruncate %s to %llu: %s", m->path, (unsigned long long)F0,
				   strerror(errno));
		close(fd);
		pthread_rwlock_init(&m->tail_lock, NULL);
		pthread_mutex_init(&m->pend_mtx, NULL);
		m->size = F0;
		m->shared = xalloc(opt.shared);
		tail_reserve(m, F0 + BLK);
	}
	for (unsigned i = 0; i < opt.threads; i++) {
		struct thr *t = &thr[i];
		uint64_t z = opt.seed * LC_GOLD + i;

		t->id = i;
		for (int k = 0; k < 4; k++)
			t->s[k] = mix64(z += LC_GOLD);
		t->buf = xalloc(MAXIO);
		t->buf2 = xalloc(MAXIO);
		t->chk = xalloc(opt.region > opt.shared ? opt.region : opt.shared);
		t->hist = calloc(opt.history, sizeof(*t->hist));
		t->log = calloc(opt.epoch, sizeof(*t->log));
		if (!t->hist || !t->log)
			setup_fail("out of memory");
		for (unsigned f = 0; f < opt.files; f++) {
			t->priv[f] = xalloc(opt.region);
			t->fd[f] = open(fm[f].path, O_RDWR);
			t->afd[f] = open(fm[f].path, O_WRONLY | O_APPEND);
			if (t->fd[f] < 0 || t->afd[f] < 0)
				setup_fail("open %s: %s", fm[f].path, strerror(errno));
			t->dfd[f] = open(fm[f].path, O_RDWR | O_DIRECT);
			if (t->dfd[f] < 0) {
				if (errno != EINVAL)
					setup_fail("open %s O_DIRECT: %s", fm[f].path, strerror(errno));
				odirect_errno = EINVAL;
			}
		}
	}
	if (pthread_barrier_init(&bar, NULL, (unsigned)opt.threads))
		setup_fail("pthread_barrier_init failed");
	clock_gettime(CLOCK_MONOTONIC, &t_start);
	if (pthread_create(&wd, NULL, watchdog, NULL))
		setup_fail("cannot start the watchdog thread");
	for (unsigned i = 0; i < opt.threads; i++)
		if (pthread_create(&thr[i].th, NULL, worker, &thr[i]))
			setup_fail("cannot start thread %u", i);
	for (unsigned i = 0; i < opt.threads; i++)
		pthread_join(thr[i].th, NULL);
	elapsed_s = now_s();

	pthread_mutex_lock(&out_mtx);
	rc = failure.set ? 1 : 0;
	emit_json(rc ? "fail" : "pass");
	if (rc) {
		report_text();
	} else if (!opt.keep) {
		for (unsigned f = 0; f < opt.files; f++)
			unlink(fm[f].path);
	}
	return rc;
}
