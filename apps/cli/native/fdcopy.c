/*
 * fdcopy: move bytes from one file descriptor to another inside the kernel, for the converters'
 * page data (convert-legacy-stream passes page contents through unchanged). Linux only.
 *
 * Exported to JavaScript (Node-API, declared here so that no Node headers are needed to build):
 *   copy(inFd, outFd, n[, behind]) -> bytes moved (0 at end of input), or -errno when nothing was
 *                                     moved (or, with behind, when an earlier copy behind failed).
 *   settle()                       -> 0 once every copy behind has landed, or -errno of the first
 *                                     that failed (reported once).
 *
 * It reads and writes at each descriptor's current position, like read(2)/write(2), so the
 * caller's own reads and writes before and after stay in order. It tries, in turn:
 *   splice(2)                     when either side is a pipe;
 *   splice through a private pipe anything else splice accepts (file -> file, socket -> file...),
 *                                 the pipe grown to 1 MiB where the system allows;
 *   copy_file_range(2)            what splice refuses.
 * The first that works for a pair of descriptors is remembered for the next call.
 *
 * Why the private pipe before copy_file_range for two files: page data never sits page-aligned in
 * these formats (4 bytes into a page in legacy input, 16 in v2 output), and there copy_file_range,
 * which the kernel runs through a 16-page (64 KiB) internal pipe, took a median 0.41-0.43 s per
 * GiB between two ext4 files against `cat`'s 0.27-0.28 s (aligned, whole file). Through a 1 MiB
 * pipe the same copy took a median 0.27 s, through a 256 KiB one 0.31 s: the per-call work of each
 * write into the page cache, not the copying, made the difference. Mapping the input and writing
 * from the mapping took 0.31 s at best, its median anywhere from 0.32 to 0.59 s (C programs, 13-15
 * rounds each, taking turns, on one 2-core VM).
 *
 * Copies behind (`behind` true, two regular files, the output not opened for appending): the call
 * takes the bytes' places in both files (it moves both positions past them at once, as if they had
 * been copied) and one worker thread copies them there with positioned splices while the caller
 * goes on to the next batch's header. Ordering needs nothing more, because every byte has its own
 * place in a file; the caller must settle() before it closes either descriptor or reports success.
 * The first such copy of a pair runs in the caller, so a pair the kernel will not splice at
 * positions falls back to the ways above before anything is queued. With pipes or sockets on either
 * side order is the stream itself, and copies stay in the caller.
 * Built on first use by apps/cli/src/native.ts with the host's C compiler.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stddef.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

typedef struct napi_env__ *napi_env;
typedef struct napi_value__ *napi_value;
typedef struct napi_callback_info__ *napi_callback_info;
typedef int napi_status;
typedef napi_value (*napi_callback)(napi_env env, napi_callback_info info);

extern napi_status napi_get_cb_info(napi_env env, napi_callback_info info, size_t *argc, napi_value *argv, napi_value *this_arg, void **data);
extern napi_status napi_get_value_double(napi_env env, napi_value value, double *result);
extern napi_status napi_create_double(napi_env env, double value, napi_value *result);
extern napi_status napi_create_function(napi_env env, const char *name, size_t length, napi_callback cb, void *data, napi_value *result);
extern napi_status napi_set_named_property(napi_env env, napi_value object, const char *name, napi_value value);
extern napi_status napi_get_value_bool(napi_env env, napi_value value, _Bool *result);

enum { WAY_UNKNOWN, WAY_CFR, WAY_SPLICE, WAY_PIPE };
static int last_in = -1, last_out = -1, last_way = WAY_UNKNOWN;
static int relay[2] = {-1, -1};
static size_t relay_held = 0; /* bytes sitting in the private pipe (a write that failed half way) */
static size_t relay_size = 65536; /* the private pipe's capacity */

#define STEP ((size_t)1 << 30)

static int unsupported(int e) { return e == EXDEV || e == EINVAL || e == ENOSYS || e == EOPNOTSUPP || e == EBADF || e == ESPIPE; }

/* Bytes in the private pipe that splice would not take to `out` (an O_APPEND file, say, which
 * splice refuses only once the input's bytes are in the pipe): moved with read(2)/write(2), so
 * that no byte taken from the input is lost. */
static ssize_t drain_by_write(int out) {
  char buf[65536];
  size_t moved = 0;
  while (relay_held > 0) {
    ssize_t r = read(relay[0], buf, relay_held < sizeof buf ? relay_held : sizeof buf);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return r < 0 ? -errno : -EIO;
    for (size_t off = 0; off < (size_t)r;) {
      ssize_t w = write(out, buf + off, (size_t)r - off);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) return w < 0 ? -errno : -EIO; /* the conversion fails here: its bytes are gone */
      off += (size_t)w;
    }
    relay_held -= (size_t)r;
    moved += (size_t)r;
  }
  return (ssize_t)moved;
}

/* One step through the private pipe: input -> pipe (page references, no copy) -> output. */
static ssize_t relay_step(int in, int out, size_t n) {
  ssize_t r;
  if (relay[0] < 0) {
    if (pipe2(relay, O_CLOEXEC) < 0) return -errno;
    /* As large as allowed: fs.pipe-max-size (1 MiB by default), less once a user holds many pipe pages. */
    for (int size = 1 << 20; size >= 64 << 10; size >>= 2)
      if (fcntl(relay[1], F_SETPIPE_SZ, size) >= 0) break;
    int got = fcntl(relay[1], F_GETPIPE_SZ);
    relay_size = got > 0 ? (size_t)got : (size_t)65536;
  }
  if (relay_held == 0) {
    r = splice(in, NULL, relay[1], NULL, n < relay_size ? n : relay_size, SPLICE_F_MOVE);
    if (r <= 0) return r < 0 ? -errno : 0;
    relay_held = (size_t)r;
  }
  size_t moved = 0;
  while (relay_held > 0) {
    r = splice(relay[0], NULL, out, NULL, relay_held, SPLICE_F_MOVE);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0 && errno == EAGAIN) return moved ? (ssize_t)moved : -EAGAIN; /* the rest stays held for the next call */
    if (r <= 0) {
      ssize_t d = drain_by_write(out);
      return d < 0 ? (moved ? (ssize_t)moved : d) : (ssize_t)(moved + (size_t)d);
    }
    relay_held -= (size_t)r;
    moved += (size_t)r;
  }
  return (ssize_t)moved;
}

/* One system call's worth: > 0 moved, 0 end of input, < 0 -errno. */
static ssize_t step(int way, int in, int out, size_t n) {
  ssize_t r;
  if (way == WAY_PIPE) return relay_step(in, out, n);
  if (way == WAY_CFR) r = copy_file_range(in, NULL, out, NULL, n, 0);
  else r = splice(in, NULL, out, NULL, n, SPLICE_F_MOVE);
  return r < 0 ? -errno : r;
}

static double copy_fds(int in, int out, double want) {
  if (in != last_in || out != last_out) {
    last_in = in;
    last_out = out;
    last_way = WAY_UNKNOWN;
    if (relay_held > 0) { /* left by a failed copy to another output: not this one's bytes */
      close(relay[0]);
      close(relay[1]);
      relay[0] = relay[1] = -1;
      relay_held = 0;
    }
  }
  double moved = 0;
  while (moved < want) {
    double left = want - moved;
    size_t n = left > (double)STEP ? STEP : (size_t)left;
    ssize_t r;
    if (last_way == WAY_UNKNOWN) {
      int ways[3] = {WAY_SPLICE, WAY_PIPE, WAY_CFR};
      r = -EINVAL;
      for (int i = 0; i < 3; i++) {
        do r = step(ways[i], in, out, n); while (r == -EINTR);
        if (r >= 0 || !unsupported((int)-r)) {
          last_way = ways[i];
          break;
        }
      }
    } else {
      do r = step(last_way, in, out, n); while (r == -EINTR);
    }
    if (r == 0) break;
    if (r < 0) return moved > 0 ? moved : (double)r;
    moved += (double)r;
  }
  return moved;
}

/* ---- Copies behind the caller: two regular files, positioned splices on one worker thread ---- */

typedef struct {
  int in, out;
  loff_t in_off, out_off;
  size_t n;
} job_t;

#define QUEUE 16 /* 16 batches of 4 MiB ahead at most: the caller waits for room beyond that */
static job_t queue[QUEUE];
static unsigned q_head, q_tail; /* q_head: the job being copied or next to be; q_tail: next free slot */
static int behind_err;          /* errno of the first copy behind that failed, until settle() reports it */
static pthread_mutex_t q_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t q_work = PTHREAD_COND_INITIALIZER, q_room = PTHREAD_COND_INITIALIZER;
static int worker_up;
static int wpipe[2] = {-1, -1};
static size_t wpipe_size = 65536;
/* The pair last asked for behind: 0 not known yet, 1 copies behind, -1 copies in the caller. */
static int behind_in = -1, behind_out = -1, behind_way = 0;

static int own_pipe(void) {
  if (wpipe[0] >= 0) return 0;
  if (pipe2(wpipe, O_CLOEXEC) < 0) return errno;
  for (int size = 1 << 20; size >= 64 << 10; size >>= 2)
    if (fcntl(wpipe[1], F_SETPIPE_SZ, size) >= 0) break;
  int got = fcntl(wpipe[1], F_GETPIPE_SZ);
  wpipe_size = got > 0 ? (size_t)got : (size_t)65536;
  return 0;
}

/* Bytes of a failed job left in the pipe are nobody's: a fresh pipe for the next one. */
static void drop_pipe(void) {
  close(wpipe[0]);
  close(wpipe[1]);
  wpipe[0] = wpipe[1] = -1;
}

/* One job: 0, or the errno that stopped it (EIO when the input ended early: it shrank meanwhile). */
static int run_job(job_t *j) {
  int e = own_pipe();
  if (e) return e;
  loff_t io = j->in_off, oo = j->out_off;
  size_t left = j->n;
  while (left > 0) {
    ssize_t r = splice(j->in, &io, wpipe[1], NULL, left < wpipe_size ? left : wpipe_size, SPLICE_F_MOVE);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return r < 0 ? errno : EIO;
    size_t held = (size_t)r;
    while (held > 0) {
      ssize_t w = splice(wpipe[0], NULL, j->out, &oo, held, SPLICE_F_MOVE);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) {
        e = w < 0 ? errno : EIO;
        drop_pipe();
        return e;
      }
      held -= (size_t)w;
    }
    left -= (size_t)r;
  }
  return 0;
}

static void *worker(void *arg) {
  (void)arg;
  for (;;) {
    pthread_mutex_lock(&q_mu);
    while (q_head == q_tail) pthread_cond_wait(&q_work, &q_mu);
    job_t j = queue[q_head % QUEUE];
    int skip = behind_err != 0; /* after a failure the conversion is lost: the rest is not copied */
    pthread_mutex_unlock(&q_mu);
    int e = skip ? 0 : run_job(&j);
    pthread_mutex_lock(&q_mu);
    if (e && !behind_err) behind_err = e;
    q_head++;
    pthread_cond_broadcast(&q_room);
    pthread_mutex_unlock(&q_mu);
  }
  return NULL;
}

/* Can this pair copy behind at all: two regular files, the output not appending. */
static int behind_possible(int in, int out) {
  struct stat si, so;
  if (fstat(in, &si) < 0 || fstat(out, &so) < 0) return 0;
  if (!S_ISREG(si.st_mode) || !S_ISREG(so.st_mode)) return 0;
  int fl = fcntl(out, F_GETFL);
  return fl >= 0 && !(fl & O_APPEND);
}

/* copy(..., behind): > 0 taken (queued or copied), 0 end of input, < 0 -errno; or -ENOTSUP: not
 * this pair, nothing done (the caller copies in place). */
static double copy_behind(int in, int out, double want) {
  if (in != behind_in || out != behind_out) {
    behind_in = in;
    behind_out = out;
    behind_way = behind_possible(in, out) ? 0 : -1;
  }
  if (behind_way < 0) return -(double)ENOTSUP;
  pthread_mutex_lock(&q_mu);
  int failed = behind_err;
  pthread_mutex_unlock(&q_mu);
  if (failed) return -(double)failed;
  off_t in_off = lseek(in, 0, SEEK_CUR), out_off = lseek(out, 0, SEEK_CUR);
  struct stat st;
  if (in_off < 0 || out_off < 0 || fstat(in, &st) < 0) return -(double)errno;
  /* What the input holds now is what a copy in place would have found: the same short count at the end. */
  double have = st.st_size > in_off ? (double)(st.st_size - in_off) : 0;
  size_t n = (size_t)(want < have ? want : have);
  if (n == 0) return 0;
  job_t j = {in, out, in_off, out_off, n};
  if (behind_way == 0) {
    /* The pair's first copy, in the caller: a file system that will not splice at positions says
     * so here, before anything is queued or either position moved. */
    int e = run_job(&j);
    if (e) {
      if (!unsupported(e)) return -(double)e;
      behind_way = -1;
      return -(double)ENOTSUP;
    }
    behind_way = 1;
  } else {
    pthread_mutex_lock(&q_mu);
    if (!worker_up) {
      pthread_t t;
      pthread_attr_t attr;
      pthread_attr_init(&attr);
      pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
      worker_up = pthread_create(&t, &attr, worker, NULL) == 0;
      pthread_attr_destroy(&attr);
    }
    if (!worker_up) {
      pthread_mutex_unlock(&q_mu);
      int e = run_job(&j); /* no thread to be had: copied here, still positioned */
      if (e) return -(double)e;
    } else {
      while (q_tail - q_head >= QUEUE) pthread_cond_wait(&q_room, &q_mu);
      queue[q_tail % QUEUE] = j;
      q_tail++;
      pthread_cond_signal(&q_work);
      pthread_mutex_unlock(&q_mu);
    }
  }
  /* Both positions past the bytes, as a copy in place leaves them. */
  if (lseek(in, in_off + (off_t)n, SEEK_SET) < 0 || lseek(out, out_off + (off_t)n, SEEK_SET) < 0) return -(double)errno;
  return (double)n;
}

/* Waits until every queued copy has landed; 0, or -errno of the first that failed (then forgotten). */
static double settle(void) {
  pthread_mutex_lock(&q_mu);
  while (q_head != q_tail) pthread_cond_wait(&q_room, &q_mu);
  int e = behind_err;
  behind_err = 0;
  pthread_mutex_unlock(&q_mu);
  return e ? -(double)e : 0;
}

static napi_value js_copy(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  double a[3] = {-1, -1, 0};
  _Bool behind = 0;
  napi_value result;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  for (size_t i = 0; i < argc && i < 3; i++) napi_get_value_double(env, argv[i], &a[i]);
  if (argc > 3) napi_get_value_bool(env, argv[3], &behind);
  double r;
  if (a[0] < 0 || a[1] < 0 || a[2] < 0) r = -(double)EINVAL;
  else {
    r = behind ? copy_behind((int)a[0], (int)a[1], a[2]) : -(double)ENOTSUP;
    if (r == -(double)ENOTSUP) r = copy_fds((int)a[0], (int)a[1], a[2]);
  }
  napi_create_double(env, r, &result);
  return result;
}

static napi_value js_settle(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value result;
  napi_create_double(env, settle(), &result);
  return result;
}

napi_value napi_register_module_v1(napi_env env, napi_value exports) {
  napi_value fn;
  napi_create_function(env, "copy", 4, js_copy, NULL, &fn);
  napi_set_named_property(env, exports, "copy", fn);
  napi_create_function(env, "settle", 6, js_settle, NULL, &fn);
  napi_set_named_property(env, exports, "settle", fn);
  return exports;
}
