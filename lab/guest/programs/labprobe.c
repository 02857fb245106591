/*
 * labprobe - access-pattern generator for FUSE direct-write locking tests.
 *
 * Runs inside the guest on a labfs mount.  fio cannot express "N writers
 * hitting the kernel at the same instant at these exact offsets" or "writes
 * racing a truncate the server is sitting on", so this does it and prints ONE
 * JSON object on stdout; the Python side correlates it with labfs' counters.
 * Command line: see USAGE below.
 *
 * Exit: 0 = the probe ran (failed writes are data, not errors), 2 = usage
 * error, 1 = unexpected setup failure ("labprobe: message" on stderr).
 *
 * Data pattern (everything but append): the file is a sequence of
 * little-endian 64-bit words; the word at aligned offset o written with tag t
 * is (t << 48) | (o & 0xffffffffffff), tag = writer index + 1.  Any word read
 * back thus says *who* wrote it and *where it was meant to go* (a misplaced
 * or stale block decodes to the wrong offset), and a hole (0) matches nobody.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <linux/aio_abi.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "labcommon.h"

#ifndef RWF_APPEND
#define RWF_APPEND 0x00000010
#endif
#ifndef RWF_DSYNC
#define RWF_DSYNC 0x00000002
#endif

#define ALIGN 4096              /* O_DIRECT buffer alignment, fine for any lbs */
#define MAX_WRITERS 4096
#define MAX_EXAMPLES 8
#define OFF_MASK 0xffffffffffffULL

#define USAGE \
"usage: labprobe pwrite --file=F --writers=N --block=B [--base=OFF] [--stride=S]\n" \
"                       [--presize=BYTES] [--direct] [--verify] [--rlimit-fsize=BYTES]\n" \
"                       [--aio] [--mmap] [--segments=K] [--gate=PATH --gate-after=K]\n" \
"                       [--rwf-dsync] [--odsync] [--gate-open] [--flip-direct]\n" \
"                       [--gate=PATH --trunc-open]\n" \
"       labprobe append --file=F --writers=N --records=M --record=B [--direct]\n" \
"                       [--presize=BYTES] [--stale] [--rwf-append] [--rwf-dsync]\n" \
"                       [--odsync]\n" \
"       labprobe truncate-race --file=F --writers=N --block=B --presize=BYTES\n" \
"                       --truncate-to=T --writer-delay-ms=D [--direct] [--verify]\n" \
"                       [--rwf-dsync] [--odsync]\n" \
"       labprobe mixed --file=F --size=BYTES --block=B\n" \
"       labprobe write-until-error --file=F --writers=N --block=B --count=C\n" \
"                       [--base=OFF] [--presize=BYTES] [--direct] [--aio]\n" \
"                       [--rwf-append] [--rwf-dsync] [--odsync]\n" \
"numbers: decimal or 0x hex, optional k/m/g (x1024) suffix\n"

static void __attribute__((noreturn, format(printf, 2, 3)))
fail(int rc, const char *fmt, ...)
{
	va_list ap;
	fputs("labprobe: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs(rc == 2 ? "\n" USAGE : "\n", stderr);
	exit(rc);
}
#define die(...) fail(1, __VA_ARGS__)
#define usage(...) fail(2, __VA_ARGS__)

/* All timestamps are ms since t0 = the moment every writer has its fd open.
 * main writes t0 before the release barrier, so threads see it after. */
static struct timespec t0;

static double now_ms(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (t.tv_sec - t0.tv_sec) * 1e3 + (t.tv_nsec - t0.tv_nsec) / 1e6;
}

/* ------------------------------------------------------------------ JSON */

/* The emitter (jopen/jclose/kint/kbool/kstr...) is labcommon.h's. */
static void kms(const char *k, double v) { kdouble(k, v); }
/* KINTS({"a", x}, {"b", y}): several integer members in one go. */
struct kv { const char *k; long long v; };
static void kints(const struct kv *a, size_t n) { while (n--) kint(a->k, a->v), a++; }
#define KINTS(...) kints((const struct kv[]){__VA_ARGS__}, \
			 sizeof((const struct kv[]){__VA_ARGS__}) / sizeof(struct kv))

static void khex(const char *k, uint64_t v)
{
	char b[24];
	snprintf(b, sizeof(b), "0x%016" PRIx64, v);
	kstr(k, b);
}

/* errno as "<key>": number and "<key>_name": symbol (null when 0). */
static void kerrno(const char *key, int e)
{
	char nk[64], b[16];
	const char *n = e ? strerrorname_np(e) : NULL;
	if (e && !n)
		snprintf(b, sizeof(b), "E%d", e), n = b;
	snprintf(nk, sizeof(nk), "%s_name", key);
	kint(key, e);
	kstr(nk, n);
}

/* --------------------------------------------------------------- options */

/* A write's data as this many iovecs (--segments): the lock decision must
 * use the whole write's length, not its first segment's. */
#define MAX_SEGMENTS 16

enum { OF_FILE, OF_WRITERS, OF_BLOCK, OF_BASE, OF_STRIDE, OF_PRESIZE,
       OF_RECORDS, OF_RECORD, OF_TRUNCTO, OF_DELAY, OF_SIZE, OF_COUNT,
       OF_RLIMIT, OF_DIRECT, OF_VERIFY, OF_STALE, OF_AIO, OF_MMAP,
       OF_SEGMENTS, OF_GATE, OF_GATEAFTER, OF_RWFAPPEND, OF_RWFDSYNC, OF_ODSYNC,
       OF_GATEOPEN, OF_FLIPDIRECT, OF_TRUNCOPEN, OF_N };
static const char *const optname[OF_N] = {
	"file", "writers", "block", "base", "stride", "presize", "records",
	"record", "truncate-to", "writer-delay-ms", "size", "count",
	"rlimit-fsize", "direct", "verify", "stale", "aio", "mmap",
	"segments", "gate", "gate-after", "rwf-append", "rwf-dsync", "odsync",
	"gate-open", "flip-direct", "trunc-open" };
#define B(x) (1u << OF_##x)
#define FLAG_OPTS (B(DIRECT) | B(VERIFY) | B(STALE) | B(AIO) | B(MMAP) | B(RWFAPPEND) | \
		   B(RWFDSYNC) | B(ODSYNC) | B(GATEOPEN) | B(FLIPDIRECT) | B(TRUNCOPEN))

static unsigned seen;
static uint64_t val[OF_N];
static const char *file, *gate;

static int has(int o) { return !!(seen & (1u << o)); }

/* Decimal or 0x hex, optional k/m/g (x1024) suffix. */
static uint64_t parse_num(const char *name, const char *s)
{
	uint64_t v;
	if (parse_u64(s, &v))
		usage("--%s: bad number '%s'", name, s);
	return v;
}

static void parse_opts(int argc, char **argv, unsigned allowed, unsigned required)
{
	for (int i = 0; i < argc; i++) {
		if (strncmp(argv[i], "--", 2))
			usage("unexpected argument '%s'", argv[i]);
		const char *a = argv[i] + 2, *eq = strchr(a, '=');
		size_t nl = eq ? (size_t)(eq - a) : strlen(a);
		int o = 0;
		while (o < OF_N && (strlen(optname[o]) != nl || strncmp(optname[o], a, nl)))
			o++;
		if (o == OF_N || !(allowed & (1u << o)))
			usage("option '--%.*s' not valid here", (int)nl, a);
		if (has(o))
			usage("option '--%s' given twice", optname[o]);
		if ((FLAG_OPTS & (1u << o)) ? eq != NULL : eq == NULL)
			usage("option '--%s' %s", optname[o], eq ? "takes no value" : "needs =value");
		seen |= 1u << o;
		if (o == OF_FILE)
			file = eq + 1;
		else if (o == OF_GATE)
			gate = eq + 1;
		else if (eq)
			val[o] = parse_num(optname[o], eq + 1);
	}
	for (int o = 0; o < OF_N; o++)
		if ((required & (1u << o)) && !has(o))
			usage("missing --%s", optname[o]);
	if (!*file)
		usage("--file is empty");
	if (has(OF_WRITERS) && (val[OF_WRITERS] < 1 || val[OF_WRITERS] > MAX_WRITERS))
		usage("--writers must be 1..%d", MAX_WRITERS);
	/* --block=0: zero-length writes, the write path's earliest exit */
	if (has(OF_BLOCK) && val[OF_BLOCK] > (1ULL << 30))
		usage("--block must be 0..1G");
	if (has(OF_SEGMENTS) && (val[OF_SEGMENTS] < 1 || val[OF_SEGMENTS] > MAX_SEGMENTS))
		usage("--segments must be 1..%d", MAX_SEGMENTS);
	if (has(OF_STALE) && has(OF_RWFAPPEND))
		usage("--stale and --rwf-append exclude each other");
	if (has(OF_TRUNCOPEN) && (!has(OF_GATE) || has(OF_GATEAFTER)))
		usage("--trunc-open waits on the server's arrivals: give --gate, "
		      "without --gate-after");
	if (has(OF_TRUNCOPEN) && (has(OF_GATEOPEN) || has(OF_FLIPDIRECT)))
		usage("--trunc-open excludes --gate-open and --flip-direct");
	if (has(OF_GATE) != (has(OF_GATEAFTER) || has(OF_TRUNCOPEN)))
		usage("--gate and --gate-after go together");
	if (has(OF_GATEAFTER) && (val[OF_GATEAFTER] < 1 || val[OF_GATEAFTER] >= val[OF_WRITERS]))
		usage("--gate-after must be 1..writers-1");
	if ((has(OF_GATEOPEN) || has(OF_FLIPDIRECT)) && !has(OF_GATE))
		usage("--gate-open and --flip-direct act at the gate: give --gate");
}

/* --------------------------------------------------------------- helpers */

static unsigned char *abuf(size_t len)
{
	void *p;
	size_t r = (len + ALIGN) / ALIGN * ALIGN;  /* never 0 */
	if (posix_memalign(&p, ALIGN, r))
		die("out of memory (%zu bytes)", len);
	return memset(p, 0, r);
}

/* Byte at file offset o of tag's pattern (see header). Per byte so that
 * unaligned offsets/lengths stay exact; cost is noise next to the I/O. */
static inline unsigned char pat_byte(unsigned tag, uint64_t o)
{
	uint64_t w = ((uint64_t)tag << 48) | (o & ~7ULL & OFF_MASK);
	return (unsigned char)(w >> (8 * (o & 7)));
}

static void pat_fill(unsigned char *buf, size_t len, unsigned tag, uint64_t off)
{
	for (size_t i = 0; i < len; i++)
		buf[i] = pat_byte(tag, off + i);
}

/* Tag of the pattern word w found at aligned offset o; 0 if w is a hole,
 * garbage or data meant for a different offset. */
static unsigned decode_tag(uint64_t w, uint64_t o)
{
	return (w & OFF_MASK) == (o & OFF_MASK) ? (unsigned)(w >> 48) : 0;
}

/* Little-endian word at aligned file offset wo, taken from buf (which holds
 * n bytes starting at file offset off); bytes beyond the buffer read as 0. */
static uint64_t buf_word(const unsigned char *buf, size_t n, uint64_t off, uint64_t wo)
{
	uint64_t w = 0;
	for (int j = 7; j >= 0; j--)
		w = (w << 8) | (wo + j >= off && wo + j - off < n ? buf[wo + j - off] : 0);
	return w;
}

/* pread until len bytes or EOF; -1 only if nothing could be read. */
static ssize_t pread_full(int fd, unsigned char *buf, size_t len, uint64_t off)
{
	size_t done = 0;
	while (done < len) {
		ssize_t r = pread(fd, buf + done, len - done, (off_t)(off + done));
		if (r <= 0) {
			if (r < 0 && !done)
				return -1;
			break;
		}
		done += r;
	}
	return done;
}

static void presize(uint64_t size)
{
	int fd = open(file, O_WRONLY | O_CREAT, 0644);
	if (fd < 0 || ftruncate(fd, (off_t)size))
		die("presize %s to %" PRIu64 ": %s", file, size, strerror(errno));
	close(fd);
}

/* stat() size.  A dead FUSE server makes it fail (ENOTCONN): that is a
 * result, reported as null + errno, not a setup failure. */
static long long emit_final_size(void)
{
	struct stat st;
	if (stat(file, &st) == 0) {
		kint("final_size", st.st_size);
		return st.st_size;
	}
	int e = errno;
	kstr("final_size", NULL);
	kerrno("final_size_errno", e);
	return -1;
}

/* ------------------------------------------------------- append records */

/*
 * With O_APPEND the kernel picks the offset, so records describe themselves
 * (host-endian u64 words, B % 8 == 0, B >= 64):
 *   w0 = REC_MAGIC   w1 = writer << 32 | seq   w2 = B
 *   w3 = mix64(w1 ^ w2 ^ MAGIC)          (header check: a torn header fails it)
 *   wk = mix64(w1 * LC_GOLD + k), k >= 4    (payload unique to writer, seq, k)
 * Any record mixing bytes of two writes, or cut short, fails the check.
 */
static unsigned nw;                     /* writers */
static uint64_t n_writes = 1, rec_size; /* writes per writer; append record size */

#define REC_MAGIC 0x45424f5250424c4cULL   /* "LLBPROBE" */


static void rec_fill(uint64_t *r, unsigned writer, unsigned seq)
{
	uint64_t id = (uint64_t)writer << 32 | seq;
	r[0] = REC_MAGIC, r[1] = id, r[2] = rec_size;
	r[3] = mix64(id ^ rec_size ^ REC_MAGIC);
	for (uint64_t k = 4; k < rec_size / 8; k++)
		r[k] = mix64(id * LC_GOLD + k);
}

/* Valid header at p with writer/seq in range?  (p may be unaligned.) */
static int rec_hdr_ok(const unsigned char *p, size_t avail, unsigned *wr, unsigned *sq)
{
	uint64_t h[4];
	if (avail < sizeof(h))
		return 0;
	memcpy(h, p, sizeof(h));
	if (h[0] != REC_MAGIC || h[2] != rec_size || h[3] != mix64(h[1] ^ h[2] ^ REC_MAGIC))
		return 0;
	*wr = (unsigned)(h[1] >> 32), *sq = (unsigned)h[1];
	return *wr < nw && *sq < n_writes;
}

/* --------------------------------------------------------------- writers */

struct worker {
	unsigned idx;
	int fd, err, open_failed;
	uint64_t off;           /* first write's offset (unused by append) */
	size_t len;
	unsigned char *buf;
	ssize_t ret;            /* last write's return: the failing one, if any */
	uint64_t done;          /* successful writes */
	const char *stop;       /* why the write loop ended */
	double t_start, t_end;
	aio_context_t aio;      /* --aio: this writer's native AIO context */
	pid_t tid;              /* for its state in /proc (--flip-direct) */
	int finished;           /* the write loop ended (atomic) */
};

enum { M_SINGLE, M_APPEND, M_LOOP };    /* pwrite/truncate-race, append, until-error */
static struct worker *W;
static int wmode, oflags;
static pthread_barrier_t bar_ready, bar_go;

/*
 * --gate=PATH --gate-after=K: writers K.. start only once the FUSE server has
 * received K more WRITEs than when the writers were released (labfs
 * --arrivals=PATH counts them). Writers 0..K-1's WRITEs are then held by the
 * server when the others enter the kernel: who is first is decided by
 * construction. A gate that never opens (a kernel that let no WRITE through
 * in GATE_WAIT_MS) opens anyway and says so: the case is inconclusive.
 */
#define GATE_WAIT_MS 30000.0
static uint64_t gate_base;
static int gate_timed_out;
static double gate_opened_ms = -1;
static pthread_mutex_t gate_mtx = PTHREAD_MUTEX_INITIALIZER;

/* labfs --arrivals: WRITEs at word 0, held truncating OPENs at word 1. */
enum { ARRIVED_WRITE, ARRIVED_TRUNC_OPEN };

static uint64_t arrived(int word)
{
	uint64_t v = 0;
	int fd = open(gate, O_RDONLY);
	if (fd < 0 || pread(fd, &v, sizeof(v), (off_t)(word * sizeof(v))) != sizeof(v))
		die("--gate %s: cannot read the server's arrivals count: %s", gate,
		    strerror(errno));
	close(fd);
	return v;
}

static void wait_gate(void)
{
	double until = now_ms() + GATE_WAIT_MS;
	while (arrived(ARRIVED_WRITE) < gate_base + val[OF_GATEAFTER]) {
		if (now_ms() > until) {
			gate_timed_out = 1;
			break;
		}
		usleep(1000);
	}
	pthread_mutex_lock(&gate_mtx);
	if (gate_opened_ms < 0)
		gate_opened_ms = now_ms();
	pthread_mutex_unlock(&gate_mtx);
}

/*
 * What happens at the gate, after writers 0..K-1 have a WRITE held by the
 * server and before writers K.. go on (main thread, at_gate()):
 *
 * --gate-open: another thread opens --file read-only (a page-cache open when
 * the server says so), and writers K.. start only once that open sleeps
 * uninterruptibly (from 6.9 a caching open waits there for the parallel
 * writers in flight to drain) or has returned. The question: do writes that
 * begin while such an open waits still take the shared lock?
 *
 * --flip-direct: once writers K.. sleep uninterruptibly (blocked on the inode
 * lock that writer 0 holds), toggle O_DIRECT on their fds with F_SETFL. Their
 * kiocbs were made before the flip, so the path a write takes must follow the
 * kiocb's flags, not the fd's flags of the moment.
 *
 * "Sleeps uninterruptibly" is state D in /proc/self/task/TID/stat, seen twice
 * in a row: where a task blocked on an rwsem or a wait_event() shows. Never
 * seen in BLOCK_WAIT_MS: the round did not ask its question (inconclusive).
 * D is not specific (a write also sleeps so waiting for its reply), so each
 * action's time is reported: it asked its question only if it came while
 * writer 0's WRITE was still held (before writer 0's end_ms).
 */
#define BLOCK_WAIT_MS 5000.0
static int late_go = 1;         /* writers K.. wait for it (atomic) */
static struct {
	pthread_t thread;
	pid_t tid;
	int started, done, fd, err, blocked;
	double start_ms, end_ms, blocked_ms;
} opener = { .fd = -1, .blocked_ms = -1 };
static struct { int asked, blocked, flipped, err; double flipped_ms; } flip = { .flipped_ms = -1 };

static char task_state(pid_t tid)
{
	char path[64], buf[512];
	snprintf(path, sizeof(path), "/proc/self/task/%d/stat", (int)tid);
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		return '?';
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return '?';
	buf[n] = 0;
	char *p = strrchr(buf, ')');  /* the name may hold spaces and parentheses */
	return p && p[1] == ' ' ? p[2] : '?';
}

/* Wait until the thread whose tid lands in *tid sleeps uninterruptibly (1), or
 * *done says it finished, or BLOCK_WAIT_MS pass (0). */
static int wait_blocked(pid_t *tid, int *done)
{
	double until = now_ms() + BLOCK_WAIT_MS;
	int in_d = 0;
	while (now_ms() < until && !__atomic_load_n(done, __ATOMIC_ACQUIRE)) {
		pid_t t = __atomic_load_n(tid, __ATOMIC_ACQUIRE);
		in_d = t && task_state(t) == 'D' ? in_d + 1 : 0;
		if (in_d == 2)
			return 1;
		usleep(1000);
	}
	return 0;
}

static void *opener_thread(void *arg)
{
	int flags = *(const int *)arg;
	__atomic_store_n(&opener.tid, gettid(), __ATOMIC_RELEASE);
	opener.start_ms = now_ms();
	opener.fd = open(file, flags);
	opener.err = opener.fd < 0 ? errno : 0;
	opener.end_ms = now_ms();
	__atomic_store_n(&opener.done, 1, __ATOMIC_RELEASE);
	return NULL;
}

static void at_gate(void)
{
	wait_gate();
	if (has(OF_GATEOPEN)) {
		static const int read_only = O_RDONLY;
		int e = pthread_create(&opener.thread, NULL, opener_thread, (void *)&read_only);
		if (e)
			die("pthread_create: %s", strerror(e));
		opener.started = 1;
		opener.blocked = wait_blocked(&opener.tid, &opener.done);
		if (opener.blocked)
			opener.blocked_ms = now_ms();
		__atomic_store_n(&late_go, 1, __ATOMIC_RELEASE);
	}
	if (has(OF_FLIPDIRECT)) {
		/* Each late writer's fd flipped as soon as that writer is seen
		 * waiting, so none has passed its decision in the meantime. */
		flip.asked = 1;
		flip.blocked = 1;
		for (unsigned i = (unsigned)val[OF_GATEAFTER]; flip.blocked && i < nw; i++) {
			flip.blocked = wait_blocked(&W[i].tid, &W[i].finished);
			if (!flip.blocked)
				break;
			int fl = fcntl(W[i].fd, F_GETFL);
			if (fl < 0 || fcntl(W[i].fd, F_SETFL, fl ^ O_DIRECT)) {
				flip.err = errno;
				break;
			}
			flip.flipped++;
			flip.flipped_ms = now_ms();
		}
	}
}

/*
 * --trunc-open: before the writers go, another thread opens --file with
 * O_WRONLY|O_TRUNC, and the writers start only once the server holds that
 * OPEN (labfs --hold-trunc-open-us counts it in the arrivals file's second
 * word). Under writeback caching the kernel holds the inode lock across such
 * an open, up to its switch to caching I/O mode, so every writer enters the
 * kernel while the opener has the lock: whatever a writer does before it
 * takes the lock (from 6.9, the uncached I/O count that a caching open waits
 * to drain) happens while the open still has to make that switch. A writer
 * never seen waiting (state D) before the open returned did not meet it, and
 * the round did not ask its question.
 */
static struct {
	int held, blocked;
	double held_ms, blocked_ms;
} trunc_open = { .held_ms = -1, .blocked_ms = -1 };

static void trunc_open_first(void)
{
	static const int truncating = O_WRONLY | O_TRUNC;
	uint64_t base = arrived(ARRIVED_TRUNC_OPEN);
	int e = pthread_create(&opener.thread, NULL, opener_thread, (void *)&truncating);
	if (e)
		die("pthread_create: %s", strerror(e));
	opener.started = 1;
	double until = now_ms() + GATE_WAIT_MS;
	while (!(trunc_open.held = arrived(ARRIVED_TRUNC_OPEN) > base) &&
	       !__atomic_load_n(&opener.done, __ATOMIC_ACQUIRE) && now_ms() < until)
		usleep(1000);
	trunc_open.held_ms = now_ms();
}

/* After the writers went: count those seen waiting while the open had not
 * returned. open(2) returns only after the VFS's own truncate, which may wait
 * behind a writer's WRITE, so a writer counted here may be waiting for its
 * reply: the caller also checks when (blocked_ms against the server's hold). */
static void trunc_open_watch(void)
{
	for (unsigned i = 0; i < nw; i++) {
		if (!wait_blocked(&W[i].tid, &W[i].finished))
			continue;
		double t = now_ms();
		if (__atomic_load_n(&opener.done, __ATOMIC_ACQUIRE) && t >= opener.end_ms)
			continue;
		trunc_open.blocked++;
		trunc_open.blocked_ms = t;
	}
}

/* The opener's outcome, the same members under --gate-open and --trunc-open;
 * its thread joined first, its fd closed after. */
static void emit_opener_outcome(void)
{
	kerrno("errno", opener.err);
	kms("start_ms", opener.start_ms);
	kms("end_ms", opener.end_ms);
}

static void join_opener(void)
{
	if (opener.started)
		pthread_join(opener.thread, NULL);
}

static void close_opener(void)
{
	if (opener.fd >= 0)
		close(opener.fd);
}

static void emit_trunc_open(void)
{
	join_opener();
	jopen("trunc_open", '{');
	kbool("held", trunc_open.held);
	kms("held_ms", trunc_open.held_ms);
	kint("writers_blocked", trunc_open.blocked);
	kms("blocked_ms", trunc_open.blocked_ms);
	emit_opener_outcome();
	jclose('}');
	close_opener();
}

static void emit_gate_actions(void)
{
	if (has(OF_GATEOPEN)) {
		join_opener();
		jopen("open", '{');
		kbool("blocked", opener.blocked);
		kms("blocked_ms", opener.blocked_ms);
		emit_opener_outcome();
		jclose('}');
		close_opener();
	}
	if (flip.asked) {
		jopen("flip", '{');
		kbool("blocked", flip.blocked);
		kint("flipped", flip.flipped);
		kms("flipped_ms", flip.flipped_ms);
		kerrno("errno", flip.err);
		jclose('}');
	}
}

/* One write of w's buffer at `at`: pwrite, or pwritev2 over --segments iovecs
 * with the per-call flags asked for (--rwf-append, --rwf-dsync). */
static ssize_t shaped_pwrite(struct worker *w, off_t at)
{
	unsigned n = has(OF_SEGMENTS) ? (unsigned)val[OF_SEGMENTS] : 1;
	int rwf = (has(OF_RWFAPPEND) ? RWF_APPEND : 0) | (has(OF_RWFDSYNC) ? RWF_DSYNC : 0);
	if (n == 1 && !rwf)
		return pwrite(w->fd, w->buf, w->len, at);
	struct iovec iov[MAX_SEGMENTS];
	size_t per = w->len / n, done = 0;
	for (unsigned i = 0; i < n; i++) {
		size_t l = i + 1 < n ? per : w->len - done;
		iov[i] = (struct iovec){ w->buf + done, l };
		done += l;
	}
	return pwritev2(w->fd, iov, (int)n, at, rwf);
}

/* Data for writer w's k-th write. */
static void fill(struct worker *w, uint64_t k)
{
	if (wmode == M_APPEND)
		rec_fill((uint64_t *)w->buf, w->idx, (unsigned)k);
	else
		pat_fill(w->buf, w->len, w->idx + 1, w->off + k * w->len);
}

/*
 * --aio: one write submitted with native AIO (io_submit) and reaped at once.
 * The kiocb is then asynchronous (not is_sync_kiocb) even on a plain fd,
 * which is an input of FUSE's choice between its sync and async direct paths.
 * Raw system calls: the guest has no libaio headers.
 */
static ssize_t aio_pwrite(aio_context_t ctx, int fd, const void *buf, size_t len, off_t off)
{
	/* --rwf-append / --rwf-dsync reach the kiocb as they do from pwritev2. */
	int rwf = (has(OF_RWFAPPEND) ? RWF_APPEND : 0) | (has(OF_RWFDSYNC) ? RWF_DSYNC : 0);
	struct iocb cb = { .aio_fildes = (uint32_t)fd, .aio_lio_opcode = IOCB_CMD_PWRITE,
			   .aio_buf = (uint64_t)(uintptr_t)buf, .aio_nbytes = len,
			   .aio_offset = off, .aio_rw_flags = rwf };
	struct iocb *cbs[1] = { &cb };
	struct io_event ev;
	if (syscall(SYS_io_submit, ctx, 1L, cbs) != 1)
		return -1;
	if (syscall(SYS_io_getevents, ctx, 1L, 1L, &ev, NULL) != 1)
		return -1;
	if ((int64_t)ev.res < 0) {
		errno = (int)-(int64_t)ev.res;
		return -1;
	}
	return (ssize_t)ev.res;
}

static void *writer_thread(void *arg)
{
	struct worker *w = arg;
	/* Open and fill the first buffer before the barrier, so neither OPEN
	 * traffic nor CPU work decides who reaches the kernel first. */
	fill(w, 0);
	w->fd = open(file, oflags, 0644);
	w->err = w->fd < 0 ? errno : 0;
	w->open_failed = w->fd < 0;
	if (has(OF_AIO) && syscall(SYS_io_setup, 1L, &w->aio))
		die("io_setup: %s", strerror(errno));
	w->stop = w->open_failed ? "open" : "done";
	w->ret = -1;
	__atomic_store_n(&w->tid, gettid(), __ATOMIC_RELEASE);
	pthread_barrier_wait(&bar_ready);
	pthread_barrier_wait(&bar_go);
	if (has(OF_GATEAFTER) && w->idx >= val[OF_GATEAFTER]) {
		wait_gate();
		while (!__atomic_load_n(&late_go, __ATOMIC_ACQUIRE))
			usleep(1000);
	}
	w->t_start = now_ms();
	/* At most n_writes, and the first failure (errno, or a short write
	 * incl. 0) ends the loop.  No retries: a dead server (ENOTCONN) or an
	 * injected error can never make a writer spin. */
	for (uint64_t k = 0; !w->open_failed && k < n_writes; k++) {
		if (k)
			fill(w, k);
		/* --stale: an O_APPEND pwrite at offset 0.  The kernel appends all the
		 * same, but the position it sees before taking the inode lock lies
		 * inside the file, so only the O_APPEND flag can make it exclusive. */
		off_t at = (off_t)(w->off + k * w->len);
		/* Appends with per-call flags go through pwritev2: at 0 when the
		 * position must look inside the file, else at the fd's position (-1). */
		off_t apos = has(OF_STALE) || has(OF_RWFAPPEND) ? 0 : -1;
		w->ret = wmode != M_APPEND ? (has(OF_AIO) ?
					      aio_pwrite(w->aio, w->fd, w->buf, w->len, at) :
					      shaped_pwrite(w, at)) :
			 has(OF_RWFAPPEND) || has(OF_RWFDSYNC) ? shaped_pwrite(w, apos) :
			 has(OF_STALE) ? pwrite(w->fd, w->buf, w->len, 0) :
			 write(w->fd, w->buf, w->len);
		if (w->ret != (ssize_t)w->len) {
			w->err = w->ret < 0 ? errno : 0;
			w->stop = w->ret < 0 ? "error" : "short";
			break;
		}
		w->done++;
	}
	w->t_end = now_ms();
	__atomic_store_n(&w->finished, 1, __ATOMIC_RELEASE);
	if (w->aio)
		syscall(SYS_io_destroy, w->aio);
	return NULL;
}

/*
 * Run --writers threads; writer i's first write goes to base + i*stride.
 * between() runs once every writer has its fd open (that moment is t0) and
 * before all are released by one barrier.  The fds are closed only after
 * every writer finished, so FLUSH/RELEASE stay out of the race window.
 */
static void run_writers(int mode, uint64_t base, uint64_t stride, size_t len,
			void (*between)(void))
{
	wmode = mode;
	nw = (unsigned)val[OF_WRITERS];
	late_go = !has(OF_GATEOPEN);
	/* --rwf-append: the append is asked per call (pwritev2 RWF_APPEND, the
	 * kiocb's IOCB_APPEND) on an fd opened without O_APPEND. */
	oflags = O_WRONLY | O_CREAT |
		 (mode == M_APPEND && !has(OF_RWFAPPEND) ? O_APPEND : 0) |
		 (has(OF_DIRECT) ? O_DIRECT : 0) | (has(OF_ODSYNC) ? O_DSYNC : 0);
	W = calloc(nw, sizeof(*W));
	pthread_t *tids = calloc(nw, sizeof(*tids));
	if (!W || !tids)
		die("out of memory");
	pthread_barrier_init(&bar_ready, NULL, nw + 1);
	pthread_barrier_init(&bar_go, NULL, nw + 1);
	for (unsigned i = 0; i < nw; i++) {
		W[i] = (struct worker){ .idx = i, .off = base + i * stride, .len = len,
					.buf = abuf(len) };
		int e = pthread_create(&tids[i], NULL, writer_thread, &W[i]);
		if (e)
			die("pthread_create: %s", strerror(e));
	}
	pthread_barrier_wait(&bar_ready);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	if (gate)
		gate_base = arrived(ARRIVED_WRITE);
	if (between)
		between();
	if (has(OF_TRUNCOPEN))
		trunc_open_first();
	pthread_barrier_wait(&bar_go);
	if (has(OF_GATEOPEN) || has(OF_FLIPDIRECT))
		at_gate();
	if (has(OF_TRUNCOPEN))
		trunc_open_watch();
	for (unsigned i = 0; i < nw; i++)
		pthread_join(tids[i], NULL);
	for (unsigned i = 0; i < nw; i++)
		if (W[i].fd >= 0)
			close(W[i].fd);
	free(tids);
}

static void emit_writers(void)
{
	jopen("writers", '[');
	for (unsigned i = 0; i < nw; i++) {
		struct worker *w = &W[i];
		jopen(NULL, '{');
		kint("writer", i);
		if (wmode != M_APPEND)
			kint(wmode == M_LOOP ? "region_offset" : "offset", w->off);
		if (wmode == M_SINGLE)
			kint("len", w->len);
		else
			kint("writes_ok", w->done), kstr("stop", w->stop);
		kint(wmode == M_SINGLE ? "ret" : "last_ret", w->ret);
		kerrno(wmode == M_LOOP ? "first_errno" : "errno", w->err);
		kbool("open_failed", w->open_failed);
		kms("start_ms", w->t_start);
		kms("end_ms", w->t_end);
		if (wmode != M_SINGLE)
			kms("elapsed_ms", w->t_end - w->t_start);
		jclose('}');
	}
	jclose(']');
}

/*
 * Read back every range a writer reports written (ret > 0) and check it holds
 * that writer's pattern.  If ranges overlap (stride < block) a byte from any
 * writer covering that offset is accepted: who wins the race is undefined,
 * but stale, foreign or zero data is not.
 */
static void emit_verify(void)
{
	int fd = open(file, O_RDONLY), ok = 1, overlap = 0;
	if (fd < 0) {
		int e = errno;
		kbool("verify_ok", 0);
		kerrno("verify_errno", e);
		return;
	}
	for (unsigned i = 0; i < nw; i++)
		for (unsigned j = i + 1; j < nw; j++)
			if (W[i].ret > 0 && W[j].ret > 0 && W[i].off < W[j].off + W[j].ret &&
			    W[j].off < W[i].off + W[i].ret)
				overlap = 1;
	jopen("bad_blocks", '[');
	for (unsigned i = 0; i < nw; i++) {
		struct worker *w = &W[i];
		size_t len = w->ret > 0 ? (size_t)w->ret : 0, k = 0;
		if (!len)
			continue;
		unsigned char *buf = abuf(len);
		ssize_t got = pread_full(fd, buf, len, w->off);
		int rerr = got < 0 ? errno : 0;
		const char *why = got < 0 ? "read_error" : NULL;
		for (; !why && k < len; k++) {
			uint64_t o = w->off + k;
			int good = (size_t)got > k && buf[k] == pat_byte(i + 1, o);
			for (unsigned j = 0; overlap && !good && (size_t)got > k && j < nw; j++)
				good = W[j].ret > 0 && o >= W[j].off && o < W[j].off + W[j].ret &&
				       buf[k] == pat_byte(j + 1, o);
			if (!good) {
				why = (size_t)got > k ? "mismatch" : "short_read";  /* file too short */
				break;
			}
		}
		if (why) {
			uint64_t bad = w->off + k, wo = bad & ~7ULL;
			uint64_t fw = buf_word(buf, got > 0 ? got : 0, w->off, wo);
			unsigned tag = decode_tag(fw, wo);
			ok = 0;
			jopen(NULL, '{');
			KINTS({"writer", i}, {"offset", w->off}, {"len", len});
			kstr("reason", why);
			kint("first_bad_offset", bad);
			if (tag >= 1 && tag <= nw)
				kint("found_writer", tag - 1);
			else
				kstr("found_writer", NULL);
			khex("found_word", fw);
			kerrno("errno", rerr);
			jclose('}');
		}
		free(buf);
	}
	jclose(']');
	kbool("overlapping_ranges", overlap);
	kbool("verify_ok", ok);
	close(fd);
}

static void emit_head(const char *cmd)
{
	jopen(NULL, '{');
	kstr("cmd", cmd);
	kstr("file", file);
	kbool("direct", has(OF_DIRECT));
}

/* ------------------------------------------------------------ 1. pwrite */

/*
 * --mmap: once every writer has its fd open and before they are released,
 * a fd of our own maps the file's first page, shared (FUSE refuses that on a
 * direct-io open unless the server allowed it, FUSE_DIRECT_IO_ALLOW_MMAP)
 * and private (allowed; from 6.9 it must not switch the inode to caching I/O
 * mode, which would make the writers exclusive). The private mapping and the
 * fd are held until every writer is done; the page's first word is read
 * through the mapping, i.e. from the server.
 */
static struct {
	int fd, open_err, shared_err, private_err;
	void *map;
	uint64_t first;
} mm = { .fd = -1 };

static void map_first_page(void)
{
	mm.fd = open(file, O_RDONLY);
	if (mm.fd < 0) {
		mm.open_err = errno;
		return;
	}
	void *p = mmap(NULL, ALIGN, PROT_READ, MAP_SHARED, mm.fd, 0);
	if (p == MAP_FAILED)
		mm.shared_err = errno;
	else
		munmap(p, ALIGN);
	p = mmap(NULL, ALIGN, PROT_READ, MAP_PRIVATE, mm.fd, 0);
	if (p == MAP_FAILED) {
		mm.private_err = errno;
		return;
	}
	mm.map = p;
	memcpy(&mm.first, p, sizeof(mm.first));
}

static void emit_mmap(void)
{
	jopen("mmap", '{');
	kerrno("open_errno", mm.open_err);
	kerrno("shared_errno", mm.shared_err);
	kerrno("private_errno", mm.private_err);
	kint("first_word", mm.first);
	jclose('}');
	if (mm.map)
		munmap(mm.map, ALIGN);
	if (mm.fd >= 0)
		close(mm.fd);
}

static void cmd_pwrite(void)
{
	uint64_t blk = val[OF_BLOCK], base = val[OF_BASE];
	uint64_t stride = has(OF_STRIDE) ? val[OF_STRIDE] : blk;
	if (has(OF_PRESIZE))
		presize(val[OF_PRESIZE]);
	if (has(OF_RLIMIT)) {
		/* Writes at or past the limit must fail with EFBIG (not SIGXFSZ,
		 * which we ignore) and those crossing it come back short. */
		struct rlimit rl = { val[OF_RLIMIT], val[OF_RLIMIT] };
		signal(SIGXFSZ, SIG_IGN);
		if (setrlimit(RLIMIT_FSIZE, &rl))
			die("setrlimit(RLIMIT_FSIZE): %s", strerror(errno));
	}
	run_writers(M_SINGLE, base, stride, blk, has(OF_MMAP) ? map_first_page : NULL);

	emit_head("pwrite");
	KINTS({"block", blk}, {"base", base}, {"stride", stride});
	if (has(OF_PRESIZE))
		kint("presize", val[OF_PRESIZE]);
	else
		kstr("presize", NULL);
	kbool("aio", has(OF_AIO));
	kint("segments", has(OF_SEGMENTS) ? val[OF_SEGMENTS] : 1);
	kbool("rwf_dsync", has(OF_RWFDSYNC));
	kbool("odsync", has(OF_ODSYNC));
	if (has(OF_TRUNCOPEN)) {
		kstr("gate", NULL);
		emit_trunc_open();
	} else if (gate) {
		jopen("gate", '{');
		kint("after", val[OF_GATEAFTER]);
		kbool("timed_out", gate_timed_out);
		kms("opened_ms", gate_opened_ms);
		emit_gate_actions();
		jclose('}');
	} else {
		kstr("gate", NULL);
	}
	if (has(OF_MMAP))
		emit_mmap();
	emit_writers();
	emit_final_size();
	if (has(OF_VERIFY))
		emit_verify();
}

/* ------------------------------------------------------------ 2. append */

struct example { uint64_t off; unsigned wr, sq; const char *why; };

static void emit_examples(const char *key, const struct example *ex, unsigned n)
{
	jopen(key, '[');
	for (unsigned i = 0; i < n && i < MAX_EXAMPLES; i++) {
		jopen(NULL, '{');
		if (ex[i].why)
			kint("offset", (long long)ex[i].off), kstr("reason", ex[i].why);
		else
			kint("writer", ex[i].wr), kint("seq", ex[i].sq);
		jclose('}');
	}
	jclose(']');
}

static void cmd_append(void)
{
	n_writes = val[OF_RECORDS];
	rec_size = val[OF_RECORD];
	if (rec_size < 64 || rec_size % 8 || rec_size > (1 << 30))
		usage("--record must be a multiple of 8 in 64..1G");
	if (n_writes < 1 || n_writes > (1ULL << 28) / val[OF_WRITERS])
		usage("--records: need 1 <= writers*records <= 2^28");
	/* The file holds --presize zero bytes (default none), then only our
	 * records: the check below walks from there. */
	uint64_t head = has(OF_PRESIZE) ? val[OF_PRESIZE] : 0;
	presize(0);
	presize(head);
	run_writers(M_APPEND, 0, 0, rec_size, NULL);

	size_t total = (size_t)nw * n_writes;
	uint64_t expected = head + total * rec_size;
	unsigned write_errors = 0;
	for (unsigned i = 0; i < nw; i++)
		write_errors += W[i].done != n_writes;
	emit_head("append");
	KINTS({"records_per_writer", n_writes}, {"record", rec_size}, {"presize", head});
	kbool("stale", has(OF_STALE));
	kbool("rwf_append", has(OF_RWFAPPEND));
	emit_writers();
	KINTS({"write_errors", write_errors}, {"expected_size", expected});
	long long fsz = emit_final_size();

	/* Read the whole file back (buffered) and walk it record by record. */
	int fd = open(file, O_RDONLY), rerr = errno;
	unsigned char *data = NULL;
	ssize_t got = -1;
	if (fd >= 0 && fsz >= 0) {
		data = abuf((size_t)fsz);
		got = pread_full(fd, data, (size_t)fsz, 0);
		rerr = errno;
	}
	if (fd >= 0)
		close(fd);
	kbool("read_ok", got >= 0);
	if (got < 0) {
		kerrno("read_errno", rerr);
		kbool("ok", 0);
		return;
	}
	uint32_t *cnt = calloc(total, sizeof(*cnt));
	unsigned *lastseq = calloc(nw, sizeof(*lastseq));
	struct example torn[MAX_EXAMPLES], dup[MAX_EXAMPLES], miss[MAX_EXAMPLES];
	unsigned ntorn = 0, ndup = 0, nmiss = 0, out_of_order = 0;
	uint64_t found = 0, distinct = 0, garbage = 0;
	size_t size = (size_t)got, p = head < (uint64_t)got ? head : (size_t)got;
	if (!cnt || !lastseq)
		die("out of memory");
	for (size_t z = 0; z < p; z++)    /* the head must still be zeros */
		garbage += data[z] != 0;
	while (p < size) {
		unsigned wr, sq;
		const char *why = NULL;
		if (!rec_hdr_ok(data + p, size - p, &wr, &sq))
			why = "bad_header";
		else if (p + rec_size > size)
			why = "truncated";
		else {
			rec_fill((uint64_t *)W[0].buf, wr, sq);  /* writers are done with it */
			if (memcmp(W[0].buf, data + p, rec_size))
				why = "payload_mismatch";
		}
		if (why) {
			/* Torn, overlapped or garbage: resync at the next byte where a
			 * valid header starts, so a record written over the tail of
			 * another (racing appenders) is still found and counted. */
			if (ntorn++ < MAX_EXAMPLES)
				torn[ntorn - 1] = (struct example){ p, 0, 0, why };
			size_t q = p + 1;
			while (q < size && !rec_hdr_ok(data + q, size - q, &wr, &sq))
				q++;
			garbage += why[0] == 'b' ? q - p : 0;
			p = q;
			continue;
		}
		size_t id = (size_t)wr * n_writes + sq;
		found++;
		if (cnt[id]++ == 0)
			distinct++;
		else if (ndup++ < MAX_EXAMPLES)
			dup[ndup - 1] = (struct example){ p, wr, sq, NULL };
		/* a writer appends sequentially, so its seqs must rise in file order
		 * (an adjacent repeat is a duplicate, counted above) */
		if (sq + 1 < lastseq[wr])
			out_of_order++;
		lastseq[wr] = sq + 1;
		p += rec_size;
	}
	for (size_t id = 0; id < total; id++)
		if (!cnt[id] && nmiss++ < MAX_EXAMPLES)
			miss[nmiss - 1] = (struct example){ 0, (unsigned)(id / n_writes),
							    (unsigned)(id % n_writes), NULL };
	KINTS({"records_expected", total}, {"records_found", found},
	      {"records_distinct", distinct}, {"duplicates", found - distinct});
	emit_examples("duplicate_examples", dup, ndup);
	kint("missing", total - distinct);
	emit_examples("missing_examples", miss, nmiss);
	kint("torn", ntorn);
	emit_examples("torn_examples", torn, ntorn);
	KINTS({"garbage_bytes", garbage}, {"out_of_order", out_of_order});
	kbool("ok", !write_errors && found == total && distinct == total && !ntorn &&
		    !out_of_order && !garbage && (uint64_t)fsz == expected);
	free(data), free(cnt), free(lastseq);
}

/* ----------------------------------------------------- 3. truncate-race */

static struct {
	int fd, ret, err;
	uint64_t to, delay_ms;
	double t_start, t_end, released;
	pthread_t tid;
} tr;

static void *truncate_thread(void *arg)
{
	(void)arg;
	tr.t_start = now_ms();
	tr.ret = ftruncate(tr.fd, (off_t)tr.to);
	tr.err = tr.ret ? errno : 0;
	tr.t_end = now_ms();
	return NULL;
}

/* Runs at t0, writers' fds open: start the truncate, then hold the writers
 * back D ms so they arrive while the server sits on SETATTR, i.e. while the
 * kernel holds the inode lock and i_size is still the presize: every write
 * looks non-extending until the truncate lands. */
static void truncate_then_wait(void)
{
	int e = pthread_create(&tr.tid, NULL, truncate_thread, NULL);
	if (e)
		die("pthread_create: %s", strerror(e));
	struct timespec until = { t0.tv_sec + (time_t)(tr.delay_ms / 1000),
				  t0.tv_nsec + (long)(tr.delay_ms % 1000) * 1000000L };
	if (until.tv_nsec >= 1000000000L)
		until.tv_sec++, until.tv_nsec -= 1000000000L;
	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &until, NULL) == EINTR)
		;
	tr.released = now_ms();
}

static void cmd_truncate_race(void)
{
	uint64_t blk = val[OF_BLOCK], size = val[OF_PRESIZE];
	tr.to = val[OF_TRUNCTO];
	tr.delay_ms = val[OF_DELAY];
	presize(size);
	if ((tr.fd = open(file, O_WRONLY)) < 0)
		die("open %s: %s", file, strerror(errno));
	run_writers(M_SINGLE, 0, blk, blk, truncate_then_wait);
	pthread_join(tr.tid, NULL);
	close(tr.fd);

	/* The size there must be if the truncate was ordered before every write. */
	uint64_t expect = tr.ret ? size : tr.to;
	for (unsigned i = 0; i < nw; i++)
		if (W[i].ret > 0 && W[i].off + W[i].ret > expect)
			expect = W[i].off + W[i].ret;
	emit_head("truncate-race");
	KINTS({"block", blk}, {"presize", size}, {"truncate_to", tr.to},
	      {"writer_delay_ms", tr.delay_ms});
	jopen("truncate", '{');
	kint("ret", tr.ret);
	kerrno("errno", tr.err);
	kms("start_ms", tr.t_start);
	kms("end_ms", tr.t_end);
	kms("duration_ms", tr.t_end - tr.t_start);
	jclose('}');
	kms("writers_released_ms", tr.released);
	emit_writers();
	kint("expected_size", expect);
	emit_final_size();
	if (has(OF_VERIFY))
		emit_verify();
}

/* ------------------------------------------------------------- 4. mixed */

#define TAG_A 0xA
#define TAG_B 0xB

/* Read every block through fd and compare with what it should hold:
 * B where the direct write of that block succeeded, else A. */
static int check_read(const char *key, int fd, uint64_t nblk, uint64_t blk,
		      const unsigned char *isb)
{
	unsigned char *buf = abuf(blk), *exp = abuf(blk);
	uint64_t bad = 0;
	int rerr = 0;
	jopen(key, '{');
	jopen("mismatch_examples", '[');
	for (uint64_t i = 0; i < nblk; i++) {
		uint64_t off = i * blk;
		unsigned tag = isb[i] ? TAG_B : TAG_A;
		ssize_t r = pread_full(fd, buf, blk, off);
		size_t k = 0;
		if (r < 0) {    /* stop: the rest is unreadable too, count it all */
			rerr = errno;
			bad += nblk - i;
			break;
		}
		pat_fill(exp, blk, tag, off);
		if ((uint64_t)r == blk && !memcmp(buf, exp, blk))
			continue;
		while (k < (size_t)r && buf[k] == exp[k])
			k++;
		if (bad++ >= MAX_EXAMPLES)
			continue;
		uint64_t wo = (off + k) & ~7ULL, w = buf_word(buf, r, off, wo);
		unsigned ft = decode_tag(w, wo);
		jopen(NULL, '{');
		KINTS({"block", i}, {"first_bad_offset", off + k});
		kstr("expected", tag == TAG_A ? "A" : "B");
		kstr("found", k >= (size_t)r ? "short_read" : ft == TAG_A ? "A" :
			      ft == TAG_B ? "B" : w ? "other" : "zero");
		khex("found_word", w);
		jclose('}');
	}
	jclose(']');
	kint("mismatched_blocks", bad);
	kerrno("errno", rerr);
	kbool("ok", !bad);
	jclose('}');
	free(buf);
	free(exp);
	return !bad;
}

static void cmd_mixed(void)
{
	uint64_t size = val[OF_SIZE], blk = val[OF_BLOCK], nblk = size / blk, wok = 0, dok = 0;
	if (!size || !blk || size % blk)
		usage("--size must be a non-zero multiple of a non-zero --block");
	unsigned char *isb = calloc(nblk, 1), *buf = abuf(blk);
	int werr = 0, ferr = 0, oerr = 0, derr = 0, ok;
	if (!isb)
		die("out of memory");

	/* The buffered fd stays open throughout: its page cache is exactly what
	 * the O_DIRECT writes must invalidate for the later reads to be right. */
	int fdb = open(file, O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (fdb < 0)
		die("open %s: %s", file, strerror(errno));
	for (uint64_t i = 0; i < nblk && !werr; i++) {
		pat_fill(buf, blk, TAG_A, i * blk);
		ssize_t r = pwrite(fdb, buf, blk, (off_t)(i * blk));
		if (r == (ssize_t)blk)
			wok++;
		else
			werr = r < 0 ? errno : EIO;   /* short write reported as EIO */
	}
	if (fsync(fdb))
		ferr = errno;
	int fdd = open(file, O_RDWR | O_DIRECT);
	if (fdd < 0)
		oerr = errno;   /* e.g. EINVAL where O_DIRECT is unsupported */
	/* Fill the page cache through the buffered fd now, after the direct open:
	 * a FUSE open without FOPEN_KEEP_CACHE drops the inode's cache, so
	 * without this read the direct writes would find nothing cached and the
	 * reads below would come from the server whether or not the direct
	 * writes invalidated the cache. */
	uint64_t cached = 0;
	for (uint64_t i = 0; i < nblk && fdd >= 0; i++)
		if (pread_full(fdb, buf, blk, (off_t)(i * blk)) == (ssize_t)blk)
			cached++;
	for (uint64_t i = 1; i < nblk && fdd >= 0; i += 2) {
		pat_fill(buf, blk, TAG_B, i * blk);
		ssize_t r = pwrite(fdd, buf, blk, (off_t)(i * blk));
		if (r == (ssize_t)blk)
			isb[i] = 1, dok++;
		else if (!derr)
			derr = r < 0 ? errno : EIO;
	}

	emit_head("mixed");
	KINTS({"size", size}, {"block", blk}, {"blocks", nblk}, {"buffered_blocks_written", wok},
	      {"blocks_cached_before_direct_writes", cached});
	kerrno("buffered_write_errno", werr);
	kerrno("fsync_errno", ferr);
	kerrno("direct_open_errno", oerr);
	/* the odd blocks */
	KINTS({"direct_blocks_wanted", nblk / 2}, {"direct_blocks_written", dok});
	kerrno("direct_write_errno", derr);
	ok = check_read("buffered_read", fdb, nblk, blk, isb);
	if (fdd >= 0)
		ok &= check_read("direct_read", fdd, nblk, blk, isb), close(fdd);
	else
		kstr("direct_read", NULL);
	emit_final_size();
	kbool("ok", ok && fdd >= 0 && !werr && !ferr && !derr && dok == nblk / 2 &&
		    cached == nblk);
	close(fdb);
	free(isb), free(buf);
}

/* -------------------------------------------------- 5. write-until-error */

static void cmd_until_error(void)
{
	uint64_t blk = val[OF_BLOCK], base = val[OF_BASE];
	if ((n_writes = val[OF_COUNT]) < 1)
		usage("--count must be >= 1");
	if (has(OF_PRESIZE))
		presize(val[OF_PRESIZE]);
	/* writer i owns the contiguous region base + i*count*block */
	run_writers(M_LOOP, base, n_writes * blk, blk, NULL);

	emit_head("write-until-error");
	KINTS({"block", blk}, {"count", n_writes}, {"base", base});
	emit_writers();
	emit_final_size();
}

/* ------------------------------------------------------------------ main */

static const struct {
	const char *name;
	void (*fn)(void);
	unsigned required, optional;
} cmds[] = {
	{ "pwrite", cmd_pwrite, B(FILE) | B(WRITERS) | B(BLOCK),
	  B(BASE) | B(STRIDE) | B(DIRECT) | B(PRESIZE) | B(VERIFY) | B(RLIMIT) | B(AIO) |
	  B(MMAP) | B(SEGMENTS) | B(GATE) | B(GATEAFTER) | B(RWFDSYNC) | B(ODSYNC) |
	  B(GATEOPEN) | B(FLIPDIRECT) | B(TRUNCOPEN) },
	{ "append", cmd_append, B(FILE) | B(WRITERS) | B(RECORDS) | B(RECORD),
	  B(DIRECT) | B(PRESIZE) | B(STALE) | B(RWFAPPEND) | B(RWFDSYNC) | B(ODSYNC) },
	{ "truncate-race", cmd_truncate_race,
	  B(FILE) | B(WRITERS) | B(BLOCK) | B(PRESIZE) | B(TRUNCTO) | B(DELAY),
	  B(DIRECT) | B(VERIFY) | B(RWFDSYNC) | B(ODSYNC) },
	{ "mixed", cmd_mixed, B(FILE) | B(SIZE) | B(BLOCK), 0 },
	{ "write-until-error", cmd_until_error, B(FILE) | B(WRITERS) | B(BLOCK) | B(COUNT),
	  B(DIRECT) | B(PRESIZE) | B(BASE) | B(AIO) | B(RWFAPPEND) | B(RWFDSYNC) | B(ODSYNC) },
};

int main(int argc, char **argv)
{
	if (argc < 2)
		usage("missing subcommand");
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
		if (strcmp(argv[1], cmds[i].name))
			continue;
		parse_opts(argc - 2, argv + 2, cmds[i].required | cmds[i].optional,
			   cmds[i].required);
		clock_gettime(CLOCK_MONOTONIC, &t0);
		cmds[i].fn();
		jclose('}');
		putchar('\n');
		if (fflush(stdout) || ferror(stdout))
			die("writing output: %s", strerror(errno));
		return 0;
	}
	usage("unknown subcommand '%s'", argv[1]);
}
