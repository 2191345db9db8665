/*
 * fdcopy: move bytes from one file descriptor to another inside the kernel, for the converters'
 * page data (convert-legacy-stream passes page contents through unchanged). Linux only.
 *
 * Exported to JavaScript (Node-API, declared here so that no Node headers are needed to build):
 *   copy(inFd, outFd, n) -> bytes moved (0 at end of input), or -errno when nothing was moved.
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
 * Built on first use by apps/cli/src/native.ts with the host's C compiler.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
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

static napi_value js_copy(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  double a[3] = {-1, -1, 0};
  napi_value result;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  for (size_t i = 0; i < argc && i < 3; i++) napi_get_value_double(env, argv[i], &a[i]);
  double r = (a[0] < 0 || a[1] < 0 || a[2] < 0) ? -(double)EINVAL : copy_fds((int)a[0], (int)a[1], a[2]);
  napi_create_double(env, r, &result);
  return result;
}

napi_value napi_register_module_v1(napi_env env, napi_value exports) {
  napi_value fn;
  napi_create_function(env, "copy", 4, js_copy, NULL, &fn);
  napi_set_named_property(env, exports, "copy", fn);
  return exports;
}
