/*
 * labfs - a libfuse3 low-level passthrough server that measures how the
 * kernel dispatches FUSE WRITE requests.
 *
 * kernel-lab checks the locking in fuse_direct_write_iter(): with
 * FOPEN_PARALLEL_DIRECT_WRITES the kernel may send non-extending direct
 * writes on one inode concurrently, but must still serialize writes that
 * extend the file.  A server only sees requests, so labfs counts, per file,
 * how many WRITEs are in flight at once and whether an extending WRITE ever
 * runs next to another WRITE.  Knobs (delays, short writes, injected errors,
 * "null" writes) widen race windows and exercise error paths.
 *
 * Build: make -C lab/guest labfs     (libfuse 3.14, Debian 12)
 * Usage: labfs --stats=PATH [options] BACKING_DIR MOUNTPOINT   (see --help)
 */
#define _GNU_SOURCE
#define FUSE_USE_VERSION 312 /* fuse_loop_cfg_*() and loop_mt(se, cfg) */

#include <fuse_lowlevel.h>
#include <linux/fuse.h> /* wire structs for the raw OPEN/CREATE replies */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#ifndef FOPEN_PARALLEL_DIRECT_WRITES
#define FOPEN_PARALLEL_DIRECT_WRITES (1 << 6)
#endif

/*
 * libfuse >= 3.14.1 has fuse_file_info.parallel_direct_writes; 3.14.0
 * (Debian 12) cannot express the flag through fuse_reply_open() or
 * fuse_reply_create(), so there we build those two replies ourselves.
 * libfuse 3.14.0 defines no hotfix macro, hence the defined() test.
 * -DLAB_RAW_OPEN_REPLY=1 forces the raw replies anywhere.
 */
#ifndef LAB_RAW_OPEN_REPLY
#if FUSE_MAJOR_VERSION > 3 ||                                                 \
	(FUSE_MAJOR_VERSION == 3 &&                                           \
	 (FUSE_MINOR_VERSION > 14 ||                                          \
	  (FUSE_MINOR_VERSION == 14 && defined(FUSE_HOTFIX_VERSION) &&        \
	   FUSE_HOTFIX_VERSION >= 1)))
#define LAB_RAW_OPEN_REPLY 0
#else
#define LAB_RAW_OPEN_REPLY 1
#endif
#endif

/* Entry/attr cache seconds (--attr-timeout): 1 by default; a long timeout
 * makes the kernel's attribute cache the only source of a stat() unless the
 * kernel itself invalidates it, which is what a case checks. */
#define TIMEOUT opt.attr_timeout

static struct {
	int direct_io, parallel_dw, null_writes, foreground, debug, cached_readers;
	int auto_inval_data, writeback_cache;
	unsigned long hold_trunc_open_us;
	unsigned long delay_write_us, delay_setattr_us, short_write;
	unsigned long fail_every, threads;
	int fail_errno; /* 0 = not given: EIO is used */
	double attr_timeout;
	char *stats_path, *pidfile, *arrivals_path;
} opt = {.direct_io = 1, .parallel_dw = 1, .threads = 64, .attr_timeout = 1.0,
	   .auto_inval_data = 1};

static void die(int code, const char *fmt, ...)
	__attribute__((format(printf, 2, 3), noreturn));

static void die(int code, const char *fmt, ...)
{
	va_list ap;

	fputs("labfs: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(code);
}

/* A test server has no useful way to limp on without memory. */
static void *xcalloc(size_t n)
{
	void *p = calloc(1, n);

	if (!p)
		abort();
	return p;
}

/* ------------------------------------------------------------------ */
/* Counters                                                           */

/*
 * One record per path relative to the mount root, created when the path is
 * first looked up or created and kept until exit, so forget + re-lookup of a
 * name accumulates into one entry.  Its mutex guards all its fields and the
 * per-inode fields (lsize, inflight, ext_inflight) of inodes pointing at it.
 */
struct fstats {
	struct fstats *next;
	char *path;
	pthread_mutex_t mtx;
	int is_file; /* only regular files are reported */
	uint64_t writes, bytes, extending_writes, setattrs, errors_injected,
		short_writes;
	unsigned max_inflight, max_ext_overlap;
};

/* In creation order, so the JSON lists files in the order they appeared. */
static pthread_mutex_t stats_list_mtx = PTHREAD_MUTEX_INITIALIZER;
static struct fstats *stats_list, **stats_tail = &stats_list;

/* Totals; max_inflight here is the most WRITEs in flight on all files. */
static pthread_mutex_t glob_mtx = PTHREAD_MUTEX_INITIALIZER;
static struct {
	uint64_t writes, bytes, setattrs, errors_injected;
	unsigned inflight, max_inflight;
} glob;
static uint64_t write_seq; /* WRITE ordinal for --fail-write-every */
/* --arrivals: requests that reached the server so far, as native uint64_ts
 * in a file: WRITEs at offset 0, truncating OPENs held by --hold-trunc-open-us
 * at offset 8, each rewritten on every arrival (under glob_mtx, so the file
 * never goes backwards). A probe waits on it to start a second writer only
 * once the first request is held here: the order of a race is then set by
 * construction, not by the scheduler. */
enum { ARRIVED_WRITE, ARRIVED_TRUNC_OPEN, ARRIVED_KINDS };
static int arrivals_fd = -1;
static uint64_t arrivals[ARRIVED_KINDS];

/* Called with glob_mtx held. */
static void count_arrival(int kind)
{
	if (arrivals_fd < 0)
		return;
	arrivals[kind]++;
	if (pwrite(arrivals_fd, &arrivals[kind], sizeof(arrivals[kind]),
		   (off_t)(kind * sizeof(arrivals[kind]))) != sizeof(arrivals[kind]))
		die(1, "writing the arrivals file: %s", strerror(errno));
}

static struct fstats *stats_get(const char *path)
{
	struct fstats *s;

	pthread_mutex_lock(&stats_list_mtx);
	for (s = stats_list; s && strcmp(s->path, path); s = s->next)
		;
	if (!s) {
		s = xcalloc(sizeof(*s));
		if (!(s->path = strdup(path)))
			abort();
		pthread_mutex_init(&s->mtx, NULL);
		*stats_tail = s;
		stats_tail = &s->next;
	}
	pthread_mutex_unlock(&stats_list_mtx);
	return s;
}

static void json_str(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\')
			fprintf(f, "\\%c", c);
		else if (c < 0x20)
			fprintf(f, "\\u%04x", c);
		else
			fputc(c, f);
	}
	fputc('"', f);
}

static int eff_errno(void)
{
	return opt.fail_errno ? opt.fail_errno : EIO;
}

/*
 * Write the JSON snapshot to PATH.tmp and rename it over PATH so a reader
 * never sees half a file.  Serialized: the SIGUSR1 thread and the exit path
 * both call it.  Returns 0 or an errno.
 */
static int stats_dump(void)
{
	static pthread_mutex_t dump_mtx = PTHREAD_MUTEX_INITIALIZER;
	char tmp[PATH_MAX + 8];
	const char *sep = "\n  ";
	struct fstats *s;
	int err = 0;
	FILE *f;

	pthread_mutex_lock(&dump_mtx);
	snprintf(tmp, sizeof(tmp), "%s.tmp", opt.stats_path);
	if (!(f = fopen(tmp, "w"))) {
		err = errno;
		goto out;
	}
	fprintf(f, "{\"options\": {\"direct_io\": %s, \"parallel_direct_writes\""
		": %s, \"null_writes\": %s, \"delay_write_us\": %lu, "
		"\"delay_setattr_us\": %lu, \"short_write\": %lu, "
		"\"fail_write_every\": %lu, \"fail_write_errno\": %d, "
		"\"threads\": %lu},\n",
		opt.direct_io ? "true" : "false",
		opt.parallel_dw ? "true" : "false",
		opt.null_writes ? "true" : "false", opt.delay_write_us,
		opt.delay_setattr_us, opt.short_write, opt.fail_every,
		opt.fail_every ? eff_errno() : opt.fail_errno, opt.threads);
	pthread_mutex_lock(&glob_mtx);
	fprintf(f, " \"totals\": {\"writes\": %llu, \"bytes\": %llu, "
		"\"max_inflight\": %u, \"setattrs\": %llu, "
		"\"errors_injected\": %llu},\n \"files\": {",
		(unsigned long long)glob.writes, (unsigned long long)glob.bytes,
		glob.max_inflight, (unsigned long long)glob.setattrs,
		(unsigned long long)glob.errors_injected);
	pthread_mutex_unlock(&glob_mtx);
	pthread_mutex_lock(&stats_list_mtx);
	for (s = stats_list; s; s = s->next) {
		pthread_mutex_lock(&s->mtx);
		if (!s->is_file) {
			pthread_mutex_unlock(&s->mtx);
			continue;
		}
		fputs(sep, f);
		sep = ",\n  ";
		json_str(f, s->path);
		fprintf(f, ": {\"writes\": %llu, \"bytes\": %llu, "
			"\"max_inflight\": %u, \"extending_writes\": %llu, "
			"\"max_extending_overlap\": %u, \"setattrs\": %llu, "
			"\"errors_injected\": %llu, \"short_writes\": %llu}",
			(unsigned long long)s->writes,
			(unsigned long long)s->bytes, s->max_inflight,
			(unsigned long long)s->extending_writes,
			s->max_ext_overlap, (unsigned long long)s->setattrs,
			(unsigned long long)s->errors_injected,
			(unsigned long long)s->short_writes);
		pthread_mutex_unlock(&s->mtx);
	}
	pthread_mutex_unlock(&stats_list_mtx);
	fputs("}}\n", f);
	if (fflush(f) || fsync(fileno(f)))
		err = errno;
	if (fclose(f) && !err)
		err = errno;
	if (!err && rename(tmp, opt.stats_path))
		err = errno;
	if (err)
		unlink(tmp);
out:
	pthread_mutex_unlock(&dump_mtx);
	return err;
}

/* SIGUSR1 is blocked in every thread; this one alone takes it, so the dump
 * runs in normal thread context instead of a signal handler. */
static void *sigusr1_thread(void *arg)
{
	sigset_t set;
	int sig;

	(void)arg;
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	for (;;) {
		if (sigwait(&set, &sig) || sig != SIGUSR1)
			continue;
		/* Not cancellable mid-dump, or dump_mtx would stay locked. */
		pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL);
		stats_dump();
		pthread_setcancelstate(PTHREAD_CANCEL_ENABLE, NULL);
	}
	return NULL;
}

static void sleep_us(unsigned long us)
{
	struct timespec ts = {us / 1000000, (long)(us % 1000000) * 1000};

	while (us && nanosleep(&ts, &ts) && errno == EINTR)
		;
}

/* ------------------------------------------------------------------ */
/* Inode table                                                        */

/*
 * Our nodeids are pointers to these.  Backing objects are held by O_PATH
 * fds, so renames underneath do not matter.  Inodes are deduplicated by
 * (dev, ino): two nodeids for one file would give the kernel two struct
 * inodes, i.e. two independent inode locks, and the locking we measure
 * would be meaningless.
 */
struct labinode {
	struct labinode *next;
	int fd;
	dev_t dev;
	ino_t ino;
	uint64_t nlookup;  /* guarded by tab_mtx */
	struct fstats *st; /* never NULL; st->mtx guards the fields below */
	off_t lsize;       /* logical size, see fix_size() */
	unsigned inflight, ext_inflight; /* WRITEs being handled right now */
};

static pthread_mutex_t tab_mtx = PTHREAD_MUTEX_INITIALIZER;
static struct labinode *inodes;
static struct fstats root_stats = {.path = "",
				   .mtx = PTHREAD_MUTEX_INITIALIZER};
static struct labinode root = {.nlookup = 1, .st = &root_stats};

static struct labinode *IN(fuse_ino_t ino)
{
	return ino == FUSE_ROOT_ID ? &root : (struct labinode *)(uintptr_t)ino;
}

/* O_PATH fds refuse fchmod/ftruncate/futimens/open; the /proc magic link
 * reaches the very same object by path. */
static void proc_path(char *buf, size_t len, int fd)
{
	snprintf(buf, len, "/proc/self/fd/%d", fd);
}

/*
 * The server's view of a regular file's size is max(backing size, furthest
 * byte a WRITE reported done).  With --null-writes the backing file does not
 * grow, so that logical size is also what we report to the kernel; else the
 * next GETATTR would shrink i_size behind the writers' backs.
 */
static void fix_size(struct labinode *in, struct stat *st)
{
	if (!S_ISREG(st->st_mode))
		return;
	pthread_mutex_lock(&in->st->mtx);
	in->st->is_file = 1;
	if (st->st_size > in->lsize)
		in->lsize = st->st_size;
	if (opt.null_writes)
		st->st_size = in->lsize;
	pthread_mutex_unlock(&in->st->mtx);
}

/* For truncation: the only way the logical size goes down. */
static void set_lsize(struct labinode *in, off_t size)
{
	pthread_mutex_lock(&in->st->mtx);
	in->lsize = size;
	pthread_mutex_unlock(&in->st->mtx);
}

static int lab_stat(struct labinode *in, struct stat *st)
{
	if (fstatat(in->fd, "", st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW))
		return errno;
	fix_size(in, st);
	return 0;
}

/* Look NAME up under PARENT, taking one lookup reference; 0 or errno. */
static int do_lookup(fuse_ino_t parent, const char *name,
		     struct fuse_entry_param *e)
{
	struct labinode *p = IN(parent), *in;
	struct stat st;
	char *path;
	int fd, err;

	memset(e, 0, sizeof(*e));
	fd = openat(p->fd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return errno;
	if (fstatat(fd, "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW)) {
		err = errno;
		close(fd);
		return err;
	}
	pthread_mutex_lock(&tab_mtx);
	for (in = inodes; in; in = in->next)
		if (in->dev == st.st_dev && in->ino == st.st_ino)
			break;
	if (in) {
		in->nlookup++;
		close(fd);
	} else {
		in = xcalloc(sizeof(*in));
		if (asprintf(&path, "%s%s%s", p->st->path,
			     *p->st->path ? "/" : "", name) < 0)
			abort();
		in->st = stats_get(path);
		free(path);
		in->fd = fd;
		in->dev = st.st_dev;
		in->ino = st.st_ino;
		in->nlookup = 1;
		in->next = inodes;
		inodes = in;
	}
	pthread_mutex_unlock(&tab_mtx);
	fix_size(in, &st);
	e->ino = (uintptr_t)in;
	e->attr = st;
	e->attr_timeout = e->entry_timeout = TIMEOUT;
	return 0;
}

static void forget_one(fuse_ino_t ino, uint64_t n)
{
	struct labinode *in = IN(ino), **pp;

	if (in == &root)
		return;
	pthread_mutex_lock(&tab_mtx);
	in->nlookup -= n < in->nlookup ? n : in->nlookup;
	if (in->nlookup == 0) {
		for (pp = &inodes; *pp != in; pp = &(*pp)->next)
			;
		*pp = in->next;
		close(in->fd);
		free(in); /* its fstats record lives on */
	}
	pthread_mutex_unlock(&tab_mtx);
}

/* ------------------------------------------------------------------ */
/* OPEN / CREATE replies                                              */

/*
 * Both return what fuse_reply_*() returns: nonzero means the kernel did not
 * take the reply (the opener was interrupted), so the caller must undo the
 * open; no RELEASE (nor FORGET, for CREATE) will come for it.
 */
/* --hold-trunc-open-us: an OPEN with O_TRUNC (an existing file; a CREATE is
 * left alone) is answered in caching mode, N us late. Under writeback caching the kernel holds the inode lock across
 * such an open (FUSE_OPEN, then the switch to caching I/O mode), so direct
 * writers that begin meanwhile wait for it: the order of the lock and the
 * I/O mode's counters is then what a case sees. */
static int is_held_trunc_open(const struct fuse_file_info *fi)
{
	return opt.hold_trunc_open_us && (fi->flags & O_TRUNC);
}

/* --cached-readers: a read-only open is answered in caching mode (no
 * FOPEN_DIRECT_IO) while writers get direct I/O, so one inode has opens of
 * both kinds at once: what Linux 6.9's inode I/O modes arbitrate. */
static int wants_direct(const struct fuse_file_info *fi)
{
	if (opt.cached_readers && (fi->flags & O_ACCMODE) == O_RDONLY)
		return 0;
	return opt.direct_io;
}

#if LAB_RAW_OPEN_REPLY
/* Each flag as its option says, independently: a server may send
 * FOPEN_PARALLEL_DIRECT_WRITES on a caching open, and what a kernel
 * generation does with that is the kernel's business (6.9+ ignores it
 * without FOPEN_DIRECT_IO; a 6.1 kernel must take the cached path anyway). */
static uint32_t open_flags(int direct)
{
	return (direct ? FOPEN_DIRECT_IO : 0) |
	       (opt.parallel_dw ? FOPEN_PARALLEL_DIRECT_WRITES : 0);
}

static int reply_open(fuse_req_t req, struct fuse_file_info *fi, int fd,
		      int direct)
{
	(void)fi; /* the libfuse variant passes the flags through it */
	struct fuse_open_out oo = {
		.fh = (uint64_t)fd,
		.open_flags = open_flags(direct),
	};

	return fuse_reply_buf(req, (const char *)&oo, sizeof(oo));
}

static int reply_create(fuse_req_t req, const struct fuse_entry_param *e,
			struct fuse_file_info *fi, int fd)
{
	/* fuse_entry_out immediately followed by fuse_open_out (the full
	 * entry_out size assumes protocol >= 7.9; all our kernels are newer). */
	struct {
		struct fuse_entry_out e;
		struct fuse_open_out o;
	} out = {0};
	const struct stat *st = &e->attr;
	struct fuse_attr *a = &out.e.attr;

	out.e.nodeid = e->ino;
	out.e.generation = e->generation;
	out.e.entry_valid = (uint64_t)e->entry_timeout;
	out.e.attr_valid = (uint64_t)e->attr_timeout;
	a->ino = st->st_ino;
	a->size = st->st_size;
	a->blocks = st->st_blocks;
	a->atime = st->st_atim.tv_sec;
	a->atimensec = st->st_atim.tv_nsec;
	a->mtime = st->st_mtim.tv_sec;
	a->mtimensec = st->st_mtim.tv_nsec;
	a->ctime = st->st_ctim.tv_sec;
	a->ctimensec = st->st_ctim.tv_nsec;
	a->mode = st->st_mode;
	a->nlink = st->st_nlink;
	a->uid = st->st_uid;
	a->gid = st->st_gid;
	a->rdev = st->st_rdev;
	a->blksize = st->st_blksize;
	out.o.fh = (uint64_t)fd;
	out.o.open_flags = open_flags(wants_direct(fi));
	_Static_assert(sizeof(out) == sizeof(struct fuse_entry_out) +
			       sizeof(struct fuse_open_out), "padding");
	return fuse_reply_buf(req, (const char *)&out, sizeof(out));
}
#else
static int reply_open(fuse_req_t req, struct fuse_file_info *fi, int fd,
		      int direct)
{
	fi->fh = fd;
	fi->direct_io = direct;
	fi->parallel_direct_writes = opt.parallel_dw;
	return fuse_reply_open(req, fi);
}

static int reply_create(fuse_req_t req, const struct fuse_entry_param *e,
			struct fuse_file_info *fi, int fd)
{
	fi->fh = fd;
	fi->direct_io = wants_direct(fi);
	fi->parallel_direct_writes = opt.parallel_dw;
	return fuse_reply_create(req, e, fi);
}
#endif

/* Backing fds never get O_APPEND (the kernel already sends the final
 * offset; we pwrite there) nor O_DIRECT (alignment is not our business).
 * Under writeback caching the kernel may READ through a write-only open
 * (to fill a partly written page), so those are opened read-write. */
static int backing_flags(int flags)
{
	flags &= ~(O_APPEND | O_DIRECT | O_CREAT | O_EXCL | O_NOCTTY);
	if (opt.writeback_cache && (flags & O_ACCMODE) == O_WRONLY)
		flags = (flags & ~O_ACCMODE) | O_RDWR;
	return flags | O_CLOEXEC;
}

/* ------------------------------------------------------------------ */
/* Operations                                                         */

static void lab_init(void *data, struct fuse_conn_info *conn)
{
	(void)data;
	/* Writeback caching would route writes through the page cache and
	 * hide the direct-write path under test. */
	conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
	/* --writeback-cache: only for a case about what the kernel does
	 * differently then (it locks the inode across a truncating open);
	 * direct-io opens still take the direct-write path. */
	if (opt.writeback_cache) {
		if (!(conn->capable & FUSE_CAP_WRITEBACK_CACHE))
			die(1, "--writeback-cache: the kernel does not offer it");
		conn->want |= FUSE_CAP_WRITEBACK_CACHE;
	}
	/* --auto-inval-data=off: the kernel no longer drops an inode's page
	 * cache when a fresh GETATTR shows another mtime, so what keeps a
	 * buffered reader right after an O_DIRECT write is only the direct
	 * write path's own invalidation, which is what a case checks. */
	if (!opt.auto_inval_data)
		conn->want &= ~FUSE_CAP_AUTO_INVAL_DATA;
}

static void reply_entry_or_err(fuse_req_t req, fuse_ino_t parent,
			       const char *name)
{
	struct fuse_entry_param e;
	int err = do_lookup(parent, name, &e);

	if (err)
		fuse_reply_err(req, err);
	else if (fuse_reply_entry(req, &e))
		forget_one(e.ino, 1); /* kernel dropped it: no FORGET will come */
}

static void lab_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	reply_entry_or_err(req, parent, name);
}

static void lab_mknod(fuse_req_t req, fuse_ino_t parent, const char *name,
		      mode_t mode, dev_t rdev)
{
	if (mknodat(IN(parent)->fd, name, mode, rdev))
		fuse_reply_err(req, errno);
	else
		reply_entry_or_err(req, parent, name);
}

static void lab_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name,
		      mode_t mode)
{
	if (mkdirat(IN(parent)->fd, name, mode))
		fuse_reply_err(req, errno);
	else
		reply_entry_or_err(req, parent, name);
}

static void lab_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	forget_one(ino, nlookup);
	fuse_reply_none(req);
}

static void lab_forget_multi(fuse_req_t req, size_t count,
			     struct fuse_forget_data *forgets)
{
	for (size_t i = 0; i < count; i++)
		forget_one(forgets[i].ino, forgets[i].nlookup);
	fuse_reply_none(req);
}

static void lab_getattr(fuse_req_t req, fuse_ino_t ino,
			struct fuse_file_info *fi)
{
	struct stat st;
	int err = lab_stat(IN(ino), &st);

	(void)fi;
	if (err)
		fuse_reply_err(req, err);
	else
		fuse_reply_attr(req, &st, TIMEOUT);
}

static void lab_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr,
			int to_set, struct fuse_file_info *fi)
{
	struct labinode *in = IN(ino);
	char proc[64];
	struct stat st;
	int err = 0;

	pthread_mutex_lock(&in->st->mtx);
	in->st->setattrs++;
	pthread_mutex_unlock(&in->st->mtx);
	pthread_mutex_lock(&glob_mtx);
	glob.setattrs++;
	pthread_mutex_unlock(&glob_mtx);
	sleep_us(opt.delay_setattr_us);

	proc_path(proc, sizeof(proc), in->fd);
	if ((to_set & FUSE_SET_ATTR_MODE) && chmod(proc, attr->st_mode))
		err = errno;
	if (!err && (to_set & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID)) &&
	    fchownat(in->fd, "",
		     (to_set & FUSE_SET_ATTR_UID) ? attr->st_uid : (uid_t)-1,
		     (to_set & FUSE_SET_ATTR_GID) ? attr->st_gid : (gid_t)-1,
		     AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW))
		err = errno;
	if (!err && (to_set & FUSE_SET_ATTR_SIZE)) {
		if (fi ? ftruncate((int)fi->fh, attr->st_size)
		       : truncate(proc, attr->st_size))
			err = errno;
		else
			set_lsize(in, attr->st_size);
	}
	if (!err && (to_set & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME))) {
		struct timespec tv[2] = {{0, UTIME_OMIT}, {0, UTIME_OMIT}};

		if (to_set & FUSE_SET_ATTR_ATIME_NOW)
			tv[0].tv_nsec = UTIME_NOW;
		else if (to_set & FUSE_SET_ATTR_ATIME)
			tv[0] = attr->st_atim;
		if (to_set & FUSE_SET_ATTR_MTIME_NOW)
			tv[1].tv_nsec = UTIME_NOW;
		else if (to_set & FUSE_SET_ATTR_MTIME)
			tv[1] = attr->st_mtim;
		if (utimensat(AT_FDCWD, proc, tv, 0))
			err = errno;
	}
	if (!err)
		err = lab_stat(in, &st);
	if (err)
		fuse_reply_err(req, err);
	else
		fuse_reply_attr(req, &st, TIMEOUT);
}

static void lab_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	fuse_reply_err(req, unlinkat(IN(parent)->fd, name, 0) ? errno : 0);
}

static void lab_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	fuse_reply_err(req,
		       unlinkat(IN(parent)->fd, name, AT_REMOVEDIR) ? errno : 0);
}

static void lab_rename(fuse_req_t req, fuse_ino_t parent, const char *name,
		       fuse_ino_t newparent, const char *newname,
		       unsigned int flags)
{
	fuse_reply_err(req, renameat2(IN(parent)->fd, name, IN(newparent)->fd,
				      newname, flags) ? errno : 0);
}

static void lab_create(fuse_req_t req, fuse_ino_t parent, const char *name,
		       mode_t mode, struct fuse_file_info *fi)
{
	struct fuse_entry_param e;
	int fd, err;

	fd = openat(IN(parent)->fd, name,
		    backing_flags(fi->flags) | O_CREAT | (fi->flags & O_EXCL),
		    mode);
	if (fd < 0) {
		fuse_reply_err(req, errno);
		return;
	}
	if ((err = do_lookup(parent, name, &e))) {
		close(fd);
		fuse_reply_err(req, err);
		return;
	}
	if (fi->flags & O_TRUNC) { /* an existing file may have been cut */
		set_lsize(IN(e.ino), 0);
		e.attr.st_size = 0;
	}
	if (reply_create(req, &e, fi, fd)) {
		close(fd);
		forget_one(e.ino, 1);
	}
}

static void lab_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct labinode *in = IN(ino);
	char proc[64];
	int fd;

	proc_path(proc, sizeof(proc), in->fd);
	if ((fd = open(proc, backing_flags(fi->flags))) < 0) {
		fuse_reply_err(req, errno);
		return;
	}
	/* With atomic O_TRUNC (a libfuse default) truncation arrives here
	 * rather than as a SETATTR. */
	if (fi->flags & O_TRUNC)
		set_lsize(in, 0);
	if (is_held_trunc_open(fi)) {
		pthread_mutex_lock(&glob_mtx);
		count_arrival(ARRIVED_TRUNC_OPEN);
		pthread_mutex_unlock(&glob_mtx);
		sleep_us(opt.hold_trunc_open_us);
	}
	if (reply_open(req, fi, fd, is_held_trunc_open(fi) ? 0 : wants_direct(fi)))
		close(fd);
}

static void lab_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		     struct fuse_file_info *fi)
{
	char *buf = xcalloc(size ? size : 1);
	ssize_t n = pread((int)fi->fh, buf, size, off);

	(void)ino;
	if (n < 0)
		fuse_reply_err(req, errno);
	else
		fuse_reply_buf(req, buf, (size_t)n);
	free(buf);
}

/*
 * The measurement.  A request counts as in flight from entry, before any
 * delay, so overlapping requests are seen overlapping, until right before
 * the reply, since the reply is what lets the kernel drop its inode lock.
 */
static void lab_write(fuse_req_t req, fuse_ino_t ino, const char *buf,
		      size_t size, off_t off, struct fuse_file_info *fi)
{
	struct labinode *in = IN(ino);
	struct fstats *s = in->st;
	uint64_t seq = __atomic_add_fetch(&write_seq, 1, __ATOMIC_RELAXED);
	int inject = opt.fail_every && seq % opt.fail_every == 0;
	int extending, err = 0;
	size_t want = size;
	ssize_t n;

	pthread_mutex_lock(&s->mtx);
	extending = (uint64_t)off + size > (uint64_t)in->lsize;
	s->writes++;
	if (++in->inflight > s->max_inflight)
		s->max_inflight = in->inflight;
	if (extending) {
		s->extending_writes++;
		in->ext_inflight++;
	}
	/* The counts only grow on entry, so checking here sees every peak;
	 * a lone extending WRITE (inflight 1) is not an overlap. */
	if (in->inflight >= 2 && in->ext_inflight > s->max_ext_overlap)
		s->max_ext_overlap = in->ext_inflight;
	pthread_mutex_unlock(&s->mtx);

	pthread_mutex_lock(&glob_mtx);
	glob.writes++;
	if (++glob.inflight > glob.max_inflight)
		glob.max_inflight = glob.inflight;
	count_arrival(ARRIVED_WRITE);
	pthread_mutex_unlock(&glob_mtx);

	sleep_us(opt.delay_write_us);

	if (opt.short_write && want > opt.short_write)
		want = opt.short_write;
	if (inject) {
		err = eff_errno();
		n = -1;
	} else if (opt.null_writes) {
		n = (ssize_t)want;
	} else if ((n = pwrite((int)fi->fh, buf, want, off)) < 0) {
		err = errno;
	}

	pthread_mutex_lock(&s->mtx);
	in->inflight--;
	if (extending)
		in->ext_inflight--;
	s->errors_injected += inject;
	if (n >= 0) {
		s->bytes += (uint64_t)n;
		s->short_writes += (size_t)n < size;
		if (off + n > in->lsize)
			in->lsize = off + n;
	}
	pthread_mutex_unlock(&s->mtx);

	pthread_mutex_lock(&glob_mtx);
	glob.inflight--;
	glob.errors_injected += inject;
	if (n >= 0)
		glob.bytes += (uint64_t)n;
	pthread_mutex_unlock(&glob_mtx);

	if (err)
		fuse_reply_err(req, err);
	else
		fuse_reply_write(req, (size_t)n);
}

static void lab_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	(void)fi;
	fuse_reply_err(req, 0);
}

static void lab_release(fuse_req_t req, fuse_ino_t ino,
			struct fuse_file_info *fi)
{
	(void)ino;
	close((int)fi->fh);
	fuse_reply_err(req, 0);
}

static void lab_fsync(fuse_req_t req, fuse_ino_t ino, int datasync,
		      struct fuse_file_info *fi)
{
	int fd = (int)fi->fh;

	(void)ino;
	fuse_reply_err(req, (datasync ? fdatasync(fd) : fsync(fd)) ? errno : 0);
}

static void lab_fallocate(fuse_req_t req, fuse_ino_t ino, int mode,
			  off_t off, off_t len, struct fuse_file_info *fi)
{
	struct labinode *in = IN(ino);

	/*
	 * Null writes keep no data, so they reserve no blocks either: the kernel
	 * still sends FALLOCATE and sees the size it asked for, but a benchmark
	 * sweep (fio fallocates each file-per-job file, 32 x 64 MiB per run)
	 * cannot fill the guest's disk.
	 */
	if (!opt.null_writes && fallocate((int)fi->fh, mode, off, len)) {
		fuse_reply_err(req, errno);
		return;
	}
	pthread_mutex_lock(&in->st->mtx);
	if (!(mode & FALLOC_FL_KEEP_SIZE) && off + len > in->lsize)
		in->lsize = off + len;
	pthread_mutex_unlock(&in->st->mtx);
	fuse_reply_err(req, 0);
}

static void lab_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct statvfs sv;

	(void)ino;
	if (fstatvfs(root.fd, &sv))
		fuse_reply_err(req, errno);
	else
		fuse_reply_statfs(req, &sv);
}

/* Directory handle: a DIR stream plus the cookie of its next entry. */
struct labdir {
	DIR *dp;
	off_t off;
};

static void lab_opendir(fuse_req_t req, fuse_ino_t ino,
			struct fuse_file_info *fi)
{
	struct labdir *d;
	int fd = openat(IN(ino)->fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *dp = fd < 0 ? NULL : fdopendir(fd);

	if (!dp) {
		int err = errno;
		if (fd >= 0)
			close(fd);
		fuse_reply_err(req, err);
		return;
	}
	d = xcalloc(sizeof(*d));
	d->dp = dp;
	fi->fh = (uintptr_t)d;
	if (fuse_reply_open(req, fi)) {
		closedir(dp);
		free(d);
	}
}

static void lab_readdir(fuse_req_t req, fuse_ino_t ino, size_t size,
			off_t off, struct fuse_file_info *fi)
{
	struct labdir *d = (struct labdir *)(uintptr_t)fi->fh;
	char *buf = xcalloc(size ? size : 1);
	struct dirent *ent;
	size_t used = 0, need;

	(void)ino;
	if (off != d->off)
		seekdir(d->dp, d->off = off);
	for (errno = 0; (ent = readdir(d->dp)); errno = 0) {
		struct stat st = {.st_ino = ent->d_ino,
				  .st_mode = (mode_t)ent->d_type << 12};

		need = fuse_add_direntry(req, buf + used, size - used,
					 ent->d_name, &st, ent->d_off);
		if (need > size - used) {
			seekdir(d->dp, d->off); /* no room: return it next */
			break;
		}
		used += need;
		d->off = ent->d_off;
	}
	if (!ent && errno && !used)
		fuse_reply_err(req, errno);
	else
		fuse_reply_buf(req, buf, used);
	free(buf);
}

static void lab_releasedir(fuse_req_t req, fuse_ino_t ino,
			   struct fuse_file_info *fi)
{
	struct labdir *d = (struct labdir *)(uintptr_t)fi->fh;

	(void)ino;
	closedir(d->dp);
	free(d);
	fuse_reply_err(req, 0);
}

static const struct fuse_lowlevel_ops lab_ops = {
	.init = lab_init,
	.lookup = lab_lookup,
	.forget = lab_forget,
	.forget_multi = lab_forget_multi,
	.getattr = lab_getattr,
	.setattr = lab_setattr,
	.mknod = lab_mknod,
	.mkdir = lab_mkdir,
	.unlink = lab_unlink,
	.rmdir = lab_rmdir,
	.rename = lab_rename,
	.create = lab_create,
	.open = lab_open,
	.read = lab_read,
	.write = lab_write,
	.flush = lab_flush,
	.release = lab_release,
	.fsync = lab_fsync,
	.fallocate = lab_fallocate,
	.statfs = lab_statfs,
	.opendir = lab_opendir,
	.readdir = lab_readdir,
	.releasedir = lab_releasedir,
};

/* ------------------------------------------------------------------ */
/* Command line and startup                                           */

static const char usage_text[] =
	"usage: labfs --stats=PATH [options] BACKING_DIR MOUNTPOINT\n"
	"  --direct-io=on|off              FOPEN_DIRECT_IO on OPEN/CREATE (on)\n"
	"  --parallel-direct-writes=on|off FOPEN_PARALLEL_DIRECT_WRITES (on)\n"
	"  --null-writes                   acknowledge WRITEs (and FALLOCATEs) without\n"
	"                                  touching the backing file\n"
	"  --delay-write-us=N              sleep N us in each WRITE (0)\n"
	"  --delay-setattr-us=N            sleep N us in each SETATTR (0)\n"
	"  --short-write=BYTES             write/report at most BYTES (0: off)\n"
	"  --fail-write-every=N            fail WRITE requests N, 2N, ... (0: off)\n"
	"  --fail-write-errno=E            their errno: number or name, e.g. EIO,\n"
	"                                  ENOSPC, EDQUOT, EPERM (EIO)\n"
	"  --threads=N                     worker threads (64)\n"
	"  --attr-timeout=S                entry/attr cache seconds (1)\n"
	"  --cached-readers                read-only opens in caching mode\n"
	"  --auto-inval-data=on|off        FUSE_CAP_AUTO_INVAL_DATA, libfuse's\n"
	"                                  default (on)\n"
	"  --writeback-cache               FUSE_CAP_WRITEBACK_CACHE (off)\n"
	"  --hold-trunc-open-us=N          answer OPENs with O_TRUNC N us late,\n"
	"                                  in caching mode (0: off)\n"
	"  --arrivals=PATH                 requests received so far, native\n"
	"                                  uint64s in PATH: WRITEs at offset 0,\n"
	"                                  held O_TRUNC opens at offset 8\n"
	"  --stats=PATH                    JSON counters, rewritten on SIGUSR1\n"
	"                                  and at exit (required)\n"
	"  --pidfile=PATH                  server pid; removed at exit, after\n"
	"                                  the final stats are written\n"
	"  --foreground                    do not daemonize\n"
	"  --debug                         libfuse request trace (foreground)\n"
	"  --help\n";

static unsigned long parse_num(const char *name, const char *v,
			       unsigned long min, unsigned long max)
{
	unsigned long long x;
	char *end;

	errno = 0;
	x = strtoull(v, &end, 10);
	if (!*v || *end || errno || *v == '-' || x < min || x > max)
		die(2, "invalid value '%s' for --%s (%lu..%lu)", v, name, min,
		    max);
	return (unsigned long)x;
}

static int parse_onoff(const char *name, const char *v)
{
	if (strcmp(v, "on") && strcmp(v, "off"))
		die(2, "invalid value '%s' for --%s (on|off)", v, name);
	return !strcmp(v, "on");
}

static int parse_errno(const char *v)
{
	static const struct { const char *name; int val; } tab[] = {
		{"EIO", EIO},     {"ENOSPC", ENOSPC}, {"EDQUOT", EDQUOT},
		{"EPERM", EPERM}, {"EACCES", EACCES}, {"EROFS", EROFS},
		{"EFBIG", EFBIG}, {"EINTR", EINTR},   {"EAGAIN", EAGAIN},
		{"ENOMEM", ENOMEM}, {"EINVAL", EINVAL}, {"ESTALE", ESTALE},
	};

	for (size_t i = 0; i < sizeof(tab) / sizeof(tab[0]); i++)
		if (!strcasecmp(v, tab[i].name))
			return tab[i].val;
	if (*v < '0' || *v > '9')
		die(2, "invalid value '%s' for --fail-write-errno", v);
	return (int)parse_num("fail-write-errno", v, 1, 4095);
}

/* We chdir("/") when daemonizing, so keep our own paths absolute. */
static char *abspath(const char *p)
{
	char cwd[PATH_MAX], *r;

	if (*p == '/')
		return strdup(p);
	if (!getcwd(cwd, sizeof(cwd)) || asprintf(&r, "%s/%s", cwd, p) < 0)
		die(2, "cannot resolve '%s'", p);
	return r;
}

enum { O_DIO = 256, O_PDW, O_NULL, O_DW, O_DS, O_SHORT, O_FEVERY, O_FERR,
       O_THREADS, O_STATS, O_FG, O_PID, O_DEBUG, O_HELP, O_ATTR, O_CACHEDR, O_ARRIVALS,
       O_AID, O_WBC, O_HOLDTO };

static void parse_args(int argc, char **argv, char **backing, char **mnt)
{
	static const struct option lopts[] = {
		{"direct-io", required_argument, NULL, O_DIO},
		{"parallel-direct-writes", required_argument, NULL, O_PDW},
		{"null-writes", no_argument, NULL, O_NULL},
		{"delay-write-us", required_argument, NULL, O_DW},
		{"delay-setattr-us", required_argument, NULL, O_DS},
		{"short-write", required_argument, NULL, O_SHORT},
		{"fail-write-every", required_argument, NULL, O_FEVERY},
		{"fail-write-errno", required_argument, NULL, O_FERR},
		{"threads", required_argument, NULL, O_THREADS},
		{"attr-timeout", required_argument, NULL, O_ATTR},
		{"cached-readers", no_argument, NULL, O_CACHEDR},
		{"auto-inval-data", required_argument, NULL, O_AID},
		{"stats", required_argument, NULL, O_STATS},
		{"arrivals", required_argument, NULL, O_ARRIVALS},
		{"writeback-cache", no_argument, NULL, O_WBC},
		{"hold-trunc-open-us", required_argument, NULL, O_HOLDTO},
		{"foreground", no_argument, NULL, O_FG},
		{"pidfile", required_argument, NULL, O_PID},
		{"debug", no_argument, NULL, O_DEBUG},
		{"help", no_argument, NULL, O_HELP},
		{NULL, 0, NULL, 0},
	};
	const unsigned long hour = 3600UL * 1000000; /* delay cap, in us */
	int c;

	opterr = 0; /* we word our own errors */
	while ((c = getopt_long(argc, argv, ":", lopts, NULL)) != -1) {
		switch (c) {
		case O_DIO:
			opt.direct_io = parse_onoff("direct-io", optarg);
			break;
		case O_PDW:
			opt.parallel_dw =
				parse_onoff("parallel-direct-writes", optarg);
			break;
		case O_NULL: opt.null_writes = 1; break;
		case O_CACHEDR: opt.cached_readers = 1; break;
		case O_AID:
			opt.auto_inval_data = parse_onoff("auto-inval-data", optarg);
			break;
		case O_DW:
			opt.delay_write_us =
				parse_num("delay-write-us", optarg, 0, hour);
			break;
		case O_DS:
			opt.delay_setattr_us =
				parse_num("delay-setattr-us", optarg, 0, hour);
			break;
		case O_SHORT:
			opt.short_write =
				parse_num("short-write", optarg, 0, INT_MAX);
			break;
		case O_FEVERY:
			opt.fail_every = parse_num("fail-write-every", optarg,
						   0, ULONG_MAX);
			break;
		case O_FERR: opt.fail_errno = parse_errno(optarg); break;
		case O_THREADS:
			opt.threads = parse_num("threads", optarg, 1, 10000);
			break;
		case O_ATTR:
			opt.attr_timeout = parse_num("attr-timeout", optarg, 0, 3600);
			break;
		case O_STATS: opt.stats_path = abspath(optarg); break;
		case O_ARRIVALS: opt.arrivals_path = abspath(optarg); break;
		case O_WBC: opt.writeback_cache = 1; break;
		case O_HOLDTO:
			opt.hold_trunc_open_us =
				parse_num("hold-trunc-open-us", optarg, 0, hour);
			break;
		case O_FG: opt.foreground = 1; break;
		case O_PID: opt.pidfile = abspath(optarg); break;
		case O_DEBUG: opt.debug = opt.foreground = 1; break;
		case O_HELP: fputs(usage_text, stdout); exit(0);
		case ':': die(2, "option '%s' needs a value", argv[optind - 1]);
		default:
			if (optopt >= O_DIO) /* one of ours, given "=value" */
				die(2, "option '%s' takes no value",
				    argv[optind - 1]);
			die(2, "unknown option '%s'", argv[optind - 1]);
		}
	}
	if (!opt.stats_path)
		die(2, "--stats=PATH is required");
	if (optind >= argc)
		die(2, "missing BACKING_DIR");
	if (optind + 1 >= argc)
		die(2, "missing MOUNTPOINT");
	if (optind + 2 < argc)
		die(2, "unexpected argument '%s'", argv[optind + 2]);
	*backing = argv[optind];
	*mnt = argv[optind + 1];
}

static void write_pidfile(void)
{
	FILE *f;

	if (opt.pidfile && (f = fopen(opt.pidfile, "w"))) {
		fprintf(f, "%d\n", (int)getpid());
		fclose(f);
	}
}

/*
 * Like fuse_daemonize(), except that the parent exits only after the child
 * has written the pidfile, so "labfs ... && cat PIDFILE" cannot race.  The
 * mount is already live: requests queue in the kernel until the loop runs.
 */
static void daemonize(void)
{
	int pfd[2], nul;
	char ok = 0;
	pid_t pid;

	if (pipe(pfd) || (pid = fork()) < 0)
		die(1, "cannot daemonize: %s", strerror(errno));
	if (pid > 0) {
		close(pfd[1]);
		_exit(read(pfd[0], &ok, 1) == 1 && ok == 1 ? 0 : 1);
	}
	close(pfd[0]);
	setsid();
	if (chdir("/") == 0 && (nul = open("/dev/null", O_RDWR)) >= 0) {
		dup2(nul, 0);
		dup2(nul, 1);
		dup2(nul, 2);
		if (nul > 2)
			close(nul);
	}
	write_pidfile();
	ok = 1;
	if (write(pfd[1], &ok, 1) != 1)
		_exit(1); /* parent gone: nobody is waiting for this mount */
	close(pfd[1]);
}

int main(int argc, char **argv)
{
	char *backing, *mnt, *fargv[4] = {argv[0], "-ofsname=labfs", "-d"};
	struct fuse_args args = FUSE_ARGS_INIT(2, fargv);
	struct fuse_loop_config *cfg;
	struct fuse_session *se;
	pthread_t sigthr;
	sigset_t set;
	struct stat st;
	int ret, err;

	/* Block SIGUSR1 before anything else: every later thread (libfuse
	 * workers included) inherits the mask, so only sigusr1_thread ever
	 * receives it, and an early SIGUSR1 does not kill us. */
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &set, NULL);

	parse_args(argc, argv, &backing, &mnt);
	if (stat(backing, &st))
		die(2, "backing dir '%s': %s", backing, strerror(errno));
	if (!S_ISDIR(st.st_mode))
		die(2, "backing dir '%s' is not a directory", backing);
	if ((root.fd = open(backing, O_PATH | O_DIRECTORY | O_CLOEXEC)) < 0)
		die(2, "backing dir '%s': %s", backing, strerror(errno));
	if (opt.arrivals_path) {
		arrivals_fd = open(opt.arrivals_path,
				   O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		if (arrivals_fd < 0 ||
		    pwrite(arrivals_fd, arrivals, sizeof(arrivals), 0) != sizeof(arrivals))
			die(2, "arrivals file '%s': %s", opt.arrivals_path, strerror(errno));
	}
	/* FUSE happily mounts over a regular file; our root is a directory. */
	if (stat(mnt, &st))
		die(2, "mountpoint '%s': %s", mnt, strerror(errno));
	if (!S_ISDIR(st.st_mode))
		die(2, "mountpoint '%s' is not a directory", mnt);
	if ((err = stats_dump())) /* proves the stats path is writable */
		die(2, "cannot write stats file '%s': %s", opt.stats_path,
		    strerror(err));

	if (opt.debug)
		args.argc = 3;
	se = fuse_session_new(&args, &lab_ops, sizeof(lab_ops), NULL);
	if (!se || fuse_set_signal_handlers(se))
		die(1, "cannot set up the FUSE session");
	if (fuse_session_mount(se, mnt))
		die(1, "cannot mount on '%s'", mnt);
	if (opt.foreground)
		write_pidfile();
	else
		daemonize();
	/* Started only now: threads do not survive the fork.  Failing here
	 * must not leave a dead mount behind. */
	if (pthread_create(&sigthr, NULL, sigusr1_thread, NULL) ||
	    !(cfg = fuse_loop_cfg_create())) {
		fuse_session_unmount(se);
		die(1, "cannot start the server threads");
	}
	/* As many idle workers as workers: libfuse then never reaps one
	 * between bursts, and a request never waits for a thread. */
	fuse_loop_cfg_set_max_threads(cfg, (unsigned)opt.threads);
	fuse_loop_cfg_set_idle_threads(cfg, (unsigned)opt.threads);
	ret = fuse_session_loop_mt(se, cfg); /* until unmount or signal */
	fuse_loop_cfg_destroy(cfg);
	fuse_session_unmount(se);
	fuse_remove_signal_handlers(se);
	fuse_session_destroy(se);

	pthread_cancel(sigthr);
	pthread_join(sigthr, NULL);
	if ((err = stats_dump()))
		fprintf(stderr, "labfs: cannot write stats file '%s': %s\n",
			opt.stats_path, strerror(err));
	if (opt.pidfile)
		unlink(opt.pidfile);
	return ret < 0 || err ? 1 : 0;
}
