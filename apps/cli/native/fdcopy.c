/*
 * fdcopy: move bytes from one file descriptor to another inside the kernel, for the converters'
 * page data (convert-legacy-stream passes page contents through unchanged). Linux only.
 *
 * Exported to JavaScript (Node-API, declared here so that no Node headers are needed to build):
 *   copy(inFd, outFd, n) -> bytes moved (0 at end of input), or -errno when nothing was moved.
 *
 * It reads and writes at each descriptor's current position, like read(2)/write(2), so the
 * caller's own reads and writes before and after stay in order. It tries, in turn:
 *   copy_file_range(2)            file -> file (same or, on newer kernels, any filesystem);
 *   splice(2)                     when either side is a pipe;
 *   splice through a private pipe anything else splice accepts (a socket -> a file, ...).
 * The first that works for a pair of descriptors is remembered for the next call.
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

#define STEP ((size_t)1 << 30)

static int unsupported(int e) { return e == EXDEV || e == EINVAL || e == ENOSYS || e == EOPNOTSUPP || e == EBADF || e == ESPIPE; }

/* One system call's worth: > 0 moved, 0 end of input, < 0 -errno. */
static ssize_t step(int way, int in, int out, size_t n) {
  ssize_t r;
  if (way == WAY_CFR) r = copy_file_range(in, NULL, out, NULL, n, 0);
  else if (way == WAY_SPLICE) r = splice(in, NULL, out, NULL, n, SPLICE_F_MOVE);
  else {
    if (relay[0] < 0 && pipe2(relay, O_CLOEXEC) < 0) return -errno;
    if (relay_held == 0) {
      size_t want = n < ((size_t)1 << 20) ? n : ((size_t)1 << 20);
      r = splice(in, NULL, relay[1], NULL, want, SPLICE_F_MOVE);
      if (r <= 0) return r < 0 ? -errno : 0;
      relay_held = (size_t)r;
    }
    size_t moved = 0;
    while (relay_held > 0) {
      r = splice(relay[0], NULL, out, NULL, relay_held, SPLICE_F_MOVE);
      if (r < 0) {
        if (errno == EINTR) continue;
        return moved ? (ssize_t)moved : -errno;
      }
      relay_held -= (size_t)r;
      moved += (size_t)r;
    }
    return (ssize_t)moved;
  }
  return r < 0 ? -errno : r;
}

static double copy_fds(int in, int out, double want) {
  if (in != last_in || out != last_out) {
    last_in = in;
    last_out = out;
    last_way = WAY_UNKNOWN;
  }
  double moved = 0;
  while (moved < want) {
    double left = want - moved;
    size_t n = left > (double)STEP ? STEP : (size_t)left;
    ssize_t r;
    if (last_way == WAY_UNKNOWN) {
      int ways[3] = {WAY_CFR, WAY_SPLICE, WAY_PIPE};
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
