# cython: language_level=3
"""Local folders in the kernel, without the GIL: a whole chunk's copies in one call, the
safe walk below a root that every local read, write and delete goes through, and the
flush that makes a chunk's copies durable.

The per-task hot path of a folder-to-folder copy (storage/localfs.py). One call copies
every file of a chunk: key checks, path splitting, directory descriptors (a small cache),
openat / copy_file_range / renameat, with each file's errno and failed step returned in
arrays; Python is entered once per chunk, not about 15 frames per file.

Rules the code relies on:
- The sandbox: below a root (the folder a file:// URL names; the root itself may be a
  symlink), no symlink is followed, ever. Each folder of a key is opened by its own
  openat(O_NOFOLLOW | O_DIRECTORY) from its parent's descriptor, and the file itself with
  O_NOFOLLOW; a symlink anywhere gives ELOOP, reported as such (never followed).
- Keys are safe relative paths: leading and trailing slashes dropped; empty, `.` and `..`
  segments and NUL refused (STEP_KEY, EINVAL) before any system call.
- Every length and index that comes from Python is checked against its buffer before the
  nogil loop reads it (CopyBatch.__init__): the loop only sees C arrays whose sizes are
  known.
- A chunk's copy (copy_files) is written to an unnamed file in the destination folder
  (O_TMPFILE: nothing to name, lock or clean up; a killed copy leaves nothing) and linked
  at its name once whole (linkat never replaces, never follows a symlink at that name).
  That costs a flock, an fstat and a rename less per file than the temporary below
  (18.3 -> 15.0 us of CPU per 4 KiB file on tmpfs, 35.9 -> 29.3 on ext4, in C alone).
  When something is at the name, the written file is linked at a locked temporary (by
  the rules below) and renamed over it; a filesystem without O_TMPFILE, or a process
  that may not link one, gets the temporary from the start.
- Otherwise a copy goes to a temporary name in the destination folder, `.batchops-<16 hex>.tmp`
  (30 bytes, so any valid file name can be copied), created with O_CREAT | O_EXCL |
  O_NOFOLLOW (never written through anything already there), flock()ed for as long as it
  exists, and renamed over the destination only once the data is written; on failure it is
  removed. The hex is a hash of the destination name, so the next copy of the same key
  meets a temporary left by a killed copy: it is removed when nobody holds its lock
  (the kernel dropped the dead writer's), and the copy takes it; a locked one (a live
  copy of the same name) is left alone and the copy takes a random name instead.
- Only regular files are copied (EISDIR for a folder, EINVAL for a FIFO, socket or
  device; a FIFO is opened without blocking).
- A byte rate limit (`copy_files(..., limiter)`) moves each file in slices of a tenth of
  a second's bytes, each reserved from the limiter before it is copied, so a large file
  takes as long as its bytes allow rather than arriving at once and waiting after; the
  GIL is taken back for the reservation only, and the wait sleeps without it.
- A DirCache's descriptors stay open until `release()` (the caller calls it when a chunk
  ends, so a folder replaced by hand is looked up again by the next chunk); it keeps at
  most CACHE_SIZE of them, and empties itself before an item when it might overflow
  (an item adds at most four), never during one.
"""

from time import monotonic as _monotonic

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from libc.errno cimport EINTR, errno
from libc.stdint cimport int64_t, uint64_t
from libc.stdlib cimport free, malloc
from posix.time cimport nanosleep, timespec
from posix.types cimport time_t

cdef extern from *:
    """
    #include <errno.h>
    #include <fcntl.h>
    #include <stdint.h>
    #include <stdio.h>
    #include <stdlib.h>
    #include <string.h>
    #include <sys/file.h>
    #include <sys/stat.h>
    #include <unistd.h>

    /* Steps, for the caller's error message: which call failed. */
    #define BATCHOPS_OPEN_SOURCE 0
    #define BATCHOPS_CREATE 1
    #define BATCHOPS_COPY 2
    #define BATCHOPS_RENAME 3
    #define BATCHOPS_KEY 4
    #define BATCHOPS_DEST_DIR 5
    #define BATCHOPS_CACHE 64
    #define BATCHOPS_KEY_MAX 8192

    /* A byte rate limit: `wait(ctx, n)` is called before each slice of at most `slice`
       bytes is copied, and returns once those bytes may move (it sleeps as long as the
       limiter says). NULL: no limit, whole files at once. */
    typedef struct { void (*wait)(void *ctx, long long n); void *ctx; long long slice; }
        batchops_pace;

    static long long batchops_slice(const batchops_pace *pace, long long left) {
        if (pace == NULL || left <= pace->slice) return left;
        return pace->slice;
    }

    static int batchops_copy_data(int in, int out, long long size, long long *copied,
                                  const batchops_pace *pace) {
        char buf[65536];
        long long paid = 0;  /* bytes the limiter has been asked for */
        *copied = 0;
    #ifdef __linux__
        while (*copied < size) {
            long long want = batchops_slice(pace, size - *copied);
            if (pace != NULL && paid < *copied + want) {
                pace->wait(pace->ctx, *copied + want - paid);
                paid = *copied + want;
            }
            ssize_t n = copy_file_range(in, NULL, out, NULL, (size_t)want, 0);
            if (n < 0) {
                if (errno == EINTR) continue;
                if (*copied == 0 && (errno == EXDEV || errno == ENOSYS || errno == EINVAL
                                     || errno == EOPNOTSUPP || errno == EPERM)) {
                    break;  /* not for these files: read and write instead */
                }
                return errno;
            }
            if (n == 0) {
                /* Some filesystems (procfs, some FUSE) give 0 for data they have: read
                   and write from here on (as coreutils does); a shrunk source ends there
                   too. */
                break;
            }
            *copied += n;
        }
        if (*copied >= size) return 0;
        if (*copied > 0 && lseek(in, (off_t)*copied, SEEK_SET) < 0) return errno;
    #endif
        while (*copied < size) {
            if (pace != NULL && paid < *copied + (long long)sizeof buf) {
                long long want = batchops_slice(pace, size - *copied);
                pace->wait(pace->ctx, want);
                paid = *copied + want;
            }
            ssize_t n = read(in, buf, sizeof buf);
            if (n < 0) { if (errno == EINTR) continue; return errno; }
            if (n == 0) return 0;
            ssize_t off = 0;
            while (off < n) {
                ssize_t w = write(out, buf + off, (size_t)(n - off));
                if (w < 0) { if (errno == EINTR) continue; return errno; }
                off += w;
            }
            *copied += n;
        }
        return 0;
    }

    static int batchops_copy_at(int src_dir, const char *src, int dst_dir, const char *tmp,
                                const char *dst, long long *size, int *step,
                                const batchops_pace *pace) {
        struct stat st;
        int in, out, err;
        *step = BATCHOPS_OPEN_SOURCE;
        /* O_NONBLOCK: a FIFO must not block the open; only regular files are copied. */
        in = openat(src_dir, src, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOFOLLOW);
        if (in < 0) return errno;
        if (fstat(in, &st) < 0) { err = errno; close(in); return err; }
        if (S_ISDIR(st.st_mode)) { close(in); return EISDIR; }
        if (!S_ISREG(st.st_mode)) { close(in); return EINVAL; }
        *step = BATCHOPS_CREATE;
        /* O_EXCL | O_NOFOLLOW: never write through a file or symlink already there. */
        out = openat(dst_dir, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                     0666);
        if (out < 0) { err = errno; close(in); return err; }
        *step = BATCHOPS_COPY;
        err = batchops_copy_data(in, out, (long long)st.st_size, size, pace);
        close(in);
        if (close(out) < 0 && err == 0) err = errno;
        if (err == 0) {
            *step = BATCHOPS_RENAME;
            if (renameat(dst_dir, tmp, dst_dir, dst) == 0) return 0;
            err = errno;
        }
        unlinkat(dst_dir, tmp, 0);
        return err;
    }

    /* ---- keys ---------------------------------------------------------------------- */

    /* A key as a safe path: strip slashes at both ends; refuse empty, ".", ".." segments
       and NUL. Sets the folder part (may be empty) and the file name. */
    static int batchops_split_key(const char *k, size_t len, const char **dir, size_t *dlen,
                                  const char **name, size_t *nlen) {
        size_t i = 0, j, seg;
        while (len && *k == '/') { k++; len--; }
        while (len && k[len - 1] == '/') len--;
        if (len == 0 || memchr(k, 0, len) != NULL) return EINVAL;
        while (i <= len) {
            j = i;
            while (j < len && k[j] != '/') j++;
            seg = j - i;
            if (seg == 0) return EINVAL;
            if (seg == 1 && k[i] == '.') return EINVAL;
            if (seg == 2 && k[i] == '.' && k[i + 1] == '.') return EINVAL;
            if (j == len) {
                *dir = k;
                *dlen = i ? i - 1 : 0;
                *name = k + i;
                *nlen = seg;
                return 0;
            }
            i = j + 1;
        }
        return EINVAL;
    }

    /* A NUL-terminated copy of one path component; ENAMETOOLONG above NAME_MAX. */
    static int batchops_component(char *out, const char *s, size_t n) {
        if (n > 255) return ENAMETOOLONG;
        memcpy(out, s, n);
        out[n] = 0;
        return 0;
    }

    /* ---- the folder cache -------------------------------------------------------------- */

    typedef struct { char *key; size_t len; int fd; } batchops_dir;
    /* link: how an unnamed file (O_TMPFILE) is given its name, learnt on first use:
       BATCHOPS_LINK_UNKNOWN, _EMPTY (linkat AT_EMPTY_PATH), _PROC (/proc/self/fd/N) or
       _NONE (no O_TMPFILE here: a named temporary, renamed). */
    typedef struct { batchops_dir d[BATCHOPS_CACHE]; int n; int link; } batchops_cache;
    #define BATCHOPS_LINK_UNKNOWN 0
    #define BATCHOPS_LINK_EMPTY 1
    #define BATCHOPS_LINK_PROC 2
    #define BATCHOPS_LINK_NONE 3

    static void batchops_cache_clear(batchops_cache *c) {
        int i;
        for (i = 0; i < c->n; i++) { close(c->d[i].fd); free(c->d[i].key); }
        c->n = 0;
        c->link = BATCHOPS_LINK_UNKNOWN;  /* the next folders may be on another filesystem */
    }

    static int batchops_cache_find(batchops_cache *c, const char *key, size_t len) {
        int i;
        for (i = c->n - 1; i >= 0; i--)
            if (c->d[i].len == len && memcmp(c->d[i].key, key, len) == 0) return c->d[i].fd;
        return -1;
    }

    /* Takes ownership of fd (closes it if it cannot be kept). */
    static int batchops_cache_add(batchops_cache *c, const char *key, size_t len, int fd) {
        char *copy;
        if (c->n >= BATCHOPS_CACHE) { close(fd); return EMFILE; }
        copy = (char *)malloc(len ? len : 1);
        if (copy == NULL) { close(fd); return ENOMEM; }
        memcpy(copy, key, len);
        c->d[c->n].key = copy;
        c->d[c->n].len = len;
        c->d[c->n].fd = fd;
        c->n++;
        return 0;
    }

    /* Why an O_NOFOLLOW open of `name` failed: ELOOP when it is a symlink, else err. */
    static int batchops_why(int dir, const char *name, int err) {
        struct stat st;
        if ((err == ELOOP || err == ENOTDIR || err == EMLINK)
                && fstatat(dir, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode))
            return ELOOP;
        return err;
    }

    /* Open folder `dir` below root descriptor `rfd`, one component at a time, following
       no symlink; with `create`, missing folders are made. Returns a new descriptor, or
       -1 with *err set. */
    static int batchops_walk(int rfd, const char *dir, size_t dlen, int create, int *err) {
        char comp[256];
        int cur = rfd, next;
        size_t i = 0, j;
        while (i < dlen) {
            j = i;
            while (j < dlen && dir[j] != '/') j++;
            if ((*err = batchops_component(comp, dir + i, j - i)) != 0) goto fail;
            next = openat(cur, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (next < 0 && errno == ENOENT && create) {
                if (mkdirat(cur, comp, 0777) < 0 && errno != EEXIST) { *err = errno; goto fail; }
                next = openat(cur, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            }
            if (next < 0) { *err = batchops_why(cur, comp, errno); goto fail; }
            if (cur != rfd) close(cur);
            cur = next;
            i = j + 1;
        }
        if (cur == rfd) {  /* an empty folder part: the caller owns what it gets */
            cur = dup(rfd);
            if (cur < 0) { *err = errno; return -1; }
        }
        return cur;
    fail:
        if (cur != rfd) close(cur);
        return -1;
    }

    /* The descriptor of folder `dir` below `root` (a path; it may itself be a symlink),
       from the cache or opened and cached. -1 with *err set on failure. */
    static int batchops_folder(batchops_cache *c, const char *root, size_t rlen,
                               const char *dir, size_t dlen, int create, int *err) {
        char key[BATCHOPS_KEY_MAX + 2];
        int rfd, fd;
        if (rlen + dlen + 1 > BATCHOPS_KEY_MAX) { *err = ENAMETOOLONG; return -1; }
        memcpy(key, root, rlen);
        key[rlen] = 0;  /* root, NUL, folder: the root alone is a key too */
        memcpy(key + rlen + 1, dir, dlen);
        fd = batchops_cache_find(c, key, rlen + 1 + dlen);
        if (fd >= 0) return fd;
        rfd = batchops_cache_find(c, key, rlen + 1);
        if (rfd < 0) {
            rfd = open(key, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
            if (rfd < 0) { *err = errno; return -1; }
            if ((*err = batchops_cache_add(c, key, rlen + 1, rfd)) != 0) return -1;
        }
        if (dlen == 0) return rfd;
        fd = batchops_walk(rfd, dir, dlen, create, err);
        if (fd < 0) return -1;
        if ((*err = batchops_cache_add(c, key, rlen + 1 + dlen, fd)) != 0) return -1;
        return fd;
    }

    /* ---- temporaries ----------------------------------------------------------------- */

    static uint64_t batchops_hash(const char *s, size_t n) {  /* FNV-1a, 64 bits */
        uint64_t h = 14695981039346656037ULL;
        size_t i;
        for (i = 0; i < n; i++) { h ^= (unsigned char)s[i]; h *= 1099511628211ULL; }
        return h;
    }

    static uint64_t batchops_next(uint64_t *rng) {  /* xorshift64* */
        uint64_t x = *rng ? *rng : 0x9E3779B97F4A7C15ULL;
        x ^= x >> 12; x ^= x << 25; x ^= x >> 27;
        *rng = x;
        return x * 2685821657736338717ULL;
    }

    static int batchops_locked(int fd) {
        /* 1: we hold it; 0: someone else does; -1: this filesystem has no flock */
        if (flock(fd, LOCK_EX | LOCK_NB) == 0) return 1;
        if (errno == EWOULDBLOCK || errno == EINTR) return 0;
        return -1;
    }

    /* Something is at temporary name `tmp`: remove it if it is a temporary nobody holds
       (its writer was killed). 1 when the name may be tried again. */
    static int batchops_take_stray(int dir, const char *tmp) {
        struct stat st, now;
        int fd = openat(dir, tmp, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
        if (fd < 0) return errno == ENOENT;
        if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || batchops_locked(fd) != 1) {
            close(fd);
            return 0;
        }
        /* Under its lock, and still at that name: nobody writes it or will rename it. */
        if (fstatat(dir, tmp, &now, AT_SYMLINK_NOFOLLOW) == 0 && now.st_ino == st.st_ino
                && now.st_dev == st.st_dev)
            unlinkat(dir, tmp, 0);
        close(fd);
        return 1;
    }

    /* Create, lock and return the temporary for destination name `dst` in `dir`; the
       name is left in `tmp` (32 bytes). -1 with *err set on failure. */
    static int batchops_temp(int dir, const char *dst, size_t dlen, char *tmp, uint64_t *rng,
                             int *err) {
        struct stat st;
        int attempt, out, lock;
        snprintf(tmp, 32, ".batchops-%016llx.tmp",
                 (unsigned long long)batchops_hash(dst, dlen));
        for (attempt = 0; attempt < 6; attempt++) {
            out = openat(dir, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0666);
            if (out >= 0) {
                lock = batchops_locked(out);
                if (lock == 0 || (lock == 1 && (fstat(out, &st) < 0 || st.st_nlink == 0))) {
                    /* taken or removed by another copy between our create and our lock:
                       it is theirs now */
                    close(out);
                } else {
                    return out;
                }
            } else if (errno != EEXIST) {
                *err = errno;
                return -1;
            } else if (attempt < 2 && batchops_take_stray(dir, tmp)) {
                continue;  /* a killed copy's temporary, gone: the same name again */
            }
            snprintf(tmp, 32, ".batchops-%016llx.tmp", (unsigned long long)batchops_next(rng));
        }
        *err = EEXIST;
        return -1;
    }

    /* ---- unnamed copies (O_TMPFILE) ------------------------------------------------------ */

    /* Give the unnamed file `fd` the name `name` in `dir` (fails with EEXIST when
       something is there: linkat never replaces). 0, or the errno. */
    static int batchops_link_fd(batchops_cache *c, int fd, int dir, const char *name) {
    #ifdef O_TMPFILE
        char proc[64];
        if (c->link != BATCHOPS_LINK_PROC) {
            if (linkat(fd, "", dir, name, AT_EMPTY_PATH) == 0) {
                c->link = BATCHOPS_LINK_EMPTY;
                return 0;
            }
            /* ENOENT or EPERM: AT_EMPTY_PATH needs CAP_DAC_READ_SEARCH here */
            if (errno != ENOENT && errno != EPERM) return errno;
            if (c->link == BATCHOPS_LINK_EMPTY) return errno;
        }
        snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
        if (linkat(AT_FDCWD, proc, dir, name, AT_SYMLINK_FOLLOW) == 0) {
            c->link = BATCHOPS_LINK_PROC;
            return 0;
        }
        if (c->link == BATCHOPS_LINK_UNKNOWN && (errno == ENOENT || errno == EPERM))
            c->link = BATCHOPS_LINK_NONE;  /* neither way works here */
        return errno;
    #else
        return EOPNOTSUPP;
    #endif
    }

    /* `fd` (unnamed, locked, written) at a temporary name for destination `dst`, by the
       rules of batchops_temp (a stray nobody holds is taken; a held one is left). */
    static int batchops_link_temp(batchops_cache *c, int dir, int fd, const char *dst,
                                  size_t dlen, char *tmp, uint64_t *rng) {
        int attempt, err = EEXIST;
        snprintf(tmp, 32, ".batchops-%016llx.tmp",
                 (unsigned long long)batchops_hash(dst, dlen));
        for (attempt = 0; attempt < 6; attempt++) {
            err = batchops_link_fd(c, fd, dir, tmp);
            if (err == 0 || err != EEXIST) return err;
            if (attempt < 2 && batchops_take_stray(dir, tmp)) continue;
            snprintf(tmp, 32, ".batchops-%016llx.tmp", (unsigned long long)batchops_next(rng));
        }
        return EEXIST;
    }

    /* Copy `in` (size bytes) to `name` in `dir` through an unnamed file: the data is
       written first, then the file is linked at its name, so that it appears whole or not
       at all, and a killed copy leaves nothing behind. Something already at `name`: the
       written file is linked at a locked temporary and renamed over it. Returns 1 when
       done (*err: 0 or the errno), 0 when this filesystem has no O_TMPFILE (nothing was
       written; use the named temporary). */
    static int batchops_copy_unnamed(batchops_cache *c, int in, int dir, const char *name,
                                     size_t nlen, long long size, uint64_t *rng,
                                     long long *copied, int *step, int *err,
                                     const batchops_pace *pace) {
    #ifdef O_TMPFILE
        char tmp[32];
        int out;
        if (c->link == BATCHOPS_LINK_NONE) return 0;
        *step = BATCHOPS_CREATE;
        out = openat(dir, ".", O_TMPFILE | O_WRONLY | O_CLOEXEC, 0666);
        if (out < 0) {
            if (errno == EOPNOTSUPP || errno == EISDIR || errno == EINVAL) {
                c->link = BATCHOPS_LINK_NONE;
                return 0;
            }
            *err = errno;
            return 1;
        }
        *step = BATCHOPS_COPY;
        *err = batchops_copy_data(in, out, size, copied, pace);
        if (*err == 0) {
            *step = BATCHOPS_RENAME;
            *err = batchops_link_fd(c, out, dir, name);
            if (*err == EEXIST) {  /* replace what is there, atomically: rename */
                if (batchops_locked(out) != 0
                        && (*err = batchops_link_temp(c, dir, out, name, nlen, tmp, rng)) == 0
                        && renameat(dir, tmp, dir, name) != 0) {
                    *err = errno;
                    unlinkat(dir, tmp, 0);
                }
            } else if (*err != 0 && c->link == BATCHOPS_LINK_NONE) {
                close(out);  /* cannot be named here: start again with a named temporary */
                if (lseek(in, 0, SEEK_SET) < 0) { *err = errno; return 1; }
                *copied = 0;
                return 0;
            }
        }
        if (close(out) < 0 && *err == 0) *err = errno;
        return 1;
    #else
        return 0;
    #endif
    }

    /* ---- one file of a chunk ------------------------------------------------------------- */

    static int batchops_copy_item(batchops_cache *c, const char *sroot, size_t srl,
                                  const char *skey, size_t skl, const char *droot, size_t drl,
                                  const char *dkey, size_t dkl, uint64_t *rng,
                                  long long *size, int *step, const batchops_pace *pace) {
        const char *sdir, *sname, *ddir, *dname;
        size_t sdl, snl, ddl, dnl;
        char sbuf[256], dbuf[256], tmp[32];
        struct stat st;
        int sfd, dfd, in, out, err = 0;
        *size = 0;
        *step = BATCHOPS_KEY;
        if (batchops_split_key(skey, skl, &sdir, &sdl, &sname, &snl) != 0
                || batchops_split_key(dkey, dkl, &ddir, &ddl, &dname, &dnl) != 0)
            return EINVAL;
        if (c->n > BATCHOPS_CACHE - 4) batchops_cache_clear(c);
        *step = BATCHOPS_OPEN_SOURCE;
        if ((err = batchops_component(sbuf, sname, snl)) != 0) return err;
        sfd = batchops_folder(c, sroot, srl, sdir, sdl, 0, &err);
        if (sfd < 0) return err;
        in = openat(sfd, sbuf, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOFOLLOW);
        if (in < 0) return batchops_why(sfd, sbuf, errno);
        if (fstat(in, &st) < 0) { err = errno; close(in); return err; }
        if (S_ISDIR(st.st_mode)) { close(in); return EISDIR; }
        if (!S_ISREG(st.st_mode)) { close(in); return EINVAL; }
        *step = BATCHOPS_DEST_DIR;
        if ((err = batchops_component(dbuf, dname, dnl)) != 0) { close(in); return err; }
        dfd = batchops_folder(c, droot, drl, ddir, ddl, 1, &err);
        if (dfd < 0) { close(in); return err; }
        if (batchops_copy_unnamed(c, in, dfd, dbuf, dnl, (long long)st.st_size, rng, size,
                                  step, &err, pace)) {
            close(in);
            return err;
        }
        *step = BATCHOPS_CREATE;
        out = batchops_temp(dfd, dbuf, dnl, tmp, rng, &err);
        if (out < 0) { close(in); return err; }
        *step = BATCHOPS_COPY;
        err = batchops_copy_data(in, out, (long long)st.st_size, size, pace);
        close(in);
        if (err == 0) {
            *step = BATCHOPS_RENAME;
            /* Renamed while still locked: no one can take the temporary for a stray. */
            if (renameat(dfd, tmp, dfd, dbuf) != 0) err = errno;
        }
        if (err != 0) unlinkat(dfd, tmp, 0);
        if (close(out) < 0 && err == 0) err = errno;
        return err;
    }

    /* A key's folder opened below `root` (created with `create`), and its file name
       checked: a symlink there gives ELOOP. Returns the folder's descriptor (owned by the
       cache) and the name in `name` (256 bytes); -1 with *err set and *step on failure. */
    static int batchops_beneath(batchops_cache *c, const char *root, size_t rlen,
                                const char *key, size_t klen, int create, char *name,
                                int *err, int *step) {
        const char *dir, *n;
        size_t dlen, nlen;
        struct stat st;
        int fd;
        *step = BATCHOPS_KEY;
        if (batchops_split_key(key, klen, &dir, &dlen, &n, &nlen) != 0) { *err = EINVAL; return -1; }
        if (c->n > BATCHOPS_CACHE - 4) batchops_cache_clear(c);
        *step = create ? BATCHOPS_DEST_DIR : BATCHOPS_OPEN_SOURCE;
        if ((*err = batchops_component(name, n, nlen)) != 0) return -1;
        fd = batchops_folder(c, root, rlen, dir, dlen, create, err);
        if (fd < 0) return -1;
        /* A symlink at a destination's name is replaced by the rename, never followed. */
        if (!create && fstatat(fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode)) {
            *err = ELOOP;
            return -1;
        }
        return fd;
    }

    /* The regular file `key` below `root`, opened for reading without following a
       symlink. -1 with *err and *step set on failure. */
    static int batchops_open_read(batchops_cache *c, const char *root, size_t rlen,
                                  const char *key, size_t klen, int *err, int *step) {
        char name[256];
        struct stat st;
        int fd, dfd = batchops_beneath(c, root, rlen, key, klen, 0, name, err, step);
        if (dfd < 0) return -1;
        fd = openat(dfd, name, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0) { *err = batchops_why(dfd, name, errno); return -1; }
        if (fstat(fd, &st) < 0) { *err = errno; close(fd); return -1; }
        if (!S_ISREG(st.st_mode)) { *err = S_ISDIR(st.st_mode) ? EISDIR : EINVAL; close(fd); return -1; }
        return fd;
    }

    /* The locked temporary for destination `key` below `root` (its folders made): returns
       its descriptor; *dir gets a descriptor of its folder (the caller closes both, through
       batchops_commit or batchops_abort), `tmp` and `name` the two names. */
    static int batchops_create_temp(batchops_cache *c, const char *root, size_t rlen,
                                    const char *key, size_t klen, uint64_t *rng, int *dir,
                                    char *tmp, char *name, int *err, int *step) {
        int out, dfd = batchops_beneath(c, root, rlen, key, klen, 1, name, err, step);
        if (dfd < 0) return -1;
        *step = BATCHOPS_CREATE;
        out = batchops_temp(dfd, name, strlen(name), tmp, rng, err);
        if (out < 0) return -1;
        *dir = fcntl(dfd, F_DUPFD_CLOEXEC, 0);
        if (*dir < 0) { *err = errno; unlinkat(dfd, tmp, 0); close(out); return -1; }
        return out;
    }

    /* Rename a written temporary into place (still locked), then close it. */
    static int batchops_commit(int dir, int fd, const char *tmp, const char *name) {
        int err = 0;
        if (renameat(dir, tmp, dir, name) != 0) { err = errno; unlinkat(dir, tmp, 0); }
        if (close(fd) < 0 && err == 0) err = errno;
        close(dir);
        return err;
    }

    static void batchops_abort(int dir, int fd, const char *tmp) {
        unlinkat(dir, tmp, 0);
        close(fd);
        close(dir);
    }

    static int batchops_unlink(batchops_cache *c, const char *root, size_t rlen,
                               const char *key, size_t klen, int *step) {
        char name[256];
        int err = 0;
        int fd = batchops_beneath(c, root, rlen, key, klen, 0, name, &err, step);
        if (fd < 0) return err;
        /* unlinkat never follows a symlink: it would remove the link itself. */
        if (unlinkat(fd, name, 0) != 0) return errno;
        return 0;
    }

    static int batchops_syncfs(const char *path) {
    #ifdef __linux__
        int err = 0, fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0) return errno;
        if (syncfs(fd) != 0) err = errno;
        close(fd);
        return err;
    #else
        sync();
        return 0;
    #endif
    }
    """
    int BATCHOPS_CACHE
    ctypedef struct batchops_cache:
        int n
        int link
    ctypedef struct batchops_pace:
        void (*wait)(void *ctx, long long n) noexcept nogil
        void *ctx
        long long slice
    void batchops_cache_clear(batchops_cache *c) nogil
    int batchops_copy_at(int src_dir, const char *src, int dst_dir, const char *tmp,
                         const char *dst, long long *size, int *step,
                         const batchops_pace *pace) nogil
    int batchops_copy_item(batchops_cache *c, const char *sroot, size_t srl,
                           const char *skey, size_t skl, const char *droot, size_t drl,
                           const char *dkey, size_t dkl, uint64_t *rng,
                           long long *size, int *step, const batchops_pace *pace) nogil
    int batchops_beneath(batchops_cache *c, const char *root, size_t rlen, const char *key,
                         size_t klen, int create, char *name, int *err, int *step) nogil
    int batchops_unlink(batchops_cache *c, const char *root, size_t rlen, const char *key,
                        size_t klen, int *step) nogil
    int batchops_syncfs(const char *path) nogil
    int batchops_open_read(batchops_cache *c, const char *root, size_t rlen, const char *key,
                           size_t klen, int *err, int *step) nogil
    int batchops_create_temp(batchops_cache *c, const char *root, size_t rlen,
                             const char *key, size_t klen, uint64_t *rng, int *dir, char *tmp,
                             char *name, int *err, int *step) nogil
    int batchops_commit(int dir, int fd, const char *tmp, const char *name) nogil
    void batchops_abort(int dir, int fd, const char *tmp) nogil
    uint64_t batchops_hash(const char *s, size_t n) nogil


cdef void _pace_wait(void *ctx, long long n) noexcept nogil:
    """batchops_pace's wait: reserve `n` bytes of the job's RateLimiter (ctx, a Python
    object with `reserve(n, now)`, called with the GIL), then sleep without the GIL."""
    cdef double wait = 0.0
    cdef timespec ts
    with gil:
        try:
            wait = (<object>ctx).reserve(<double>n, _monotonic())
        except BaseException:  # never raised across the C frames above: no pacing then
            wait = 0.0
    if wait > 0.0:
        ts.tv_sec = <time_t>wait
        ts.tv_nsec = <long>((wait - <double>ts.tv_sec) * 1e9)
        while nanosleep(&ts, &ts) != 0 and errno == EINTR:
            pass


cdef bint _pace_from(object limiter, batchops_pace *pace):
    """Fill `pace` from a RateLimiter (None: no limit); slices of a tenth of a second's
    bytes (its burst), from 64 KiB to 4 MiB."""
    if limiter is None:
        return False
    pace.wait = _pace_wait
    pace.ctx = <void *>limiter
    pace.slice = <long long>min(max(float(limiter.rate) / 10.0, 65536.0), 4194304.0)
    return True


STEPS = ("open the source", "create the copy", "copy the data", "rename the copy into place",
         "check the key", "open the destination folder")
STEP_KEY = 4
CACHE_SIZE = BATCHOPS_CACHE
#: What a temporary's name looks like (a prefix, 16 hex digits, ".tmp"): 30 bytes.
TEMP_PREFIX = ".batchops-"


def temp_name(bytes dst_name):
    """The temporary a copy to file name `dst_name` tries first (tests and sweeps)."""
    return b"%s%016x.tmp" % (TEMP_PREFIX.encode(), batchops_hash(dst_name, len(dst_name)))


def _error(int err, int step):
    import os

    return OSError(err, os.strerror(err), STEPS[step])


cdef class DirCache:
    """Open folder descriptors, kept between calls until `release()` (one chunk at most).
    Not shared between threads."""

    cdef batchops_cache c
    cdef uint64_t rng

    def __cinit__(self):
        self.c.n = 0
        self.c.link = 0  # BATCHOPS_LINK_UNKNOWN
        import secrets

        self.rng = secrets.randbits(64) | 1

    def __dealloc__(self):
        batchops_cache_clear(&self.c)

    def release(self):
        """Close every folder held."""
        batchops_cache_clear(&self.c)

    @property
    def size(self):
        return self.c.n

    def copy_files(self, list roots, list src_roots, list src_keys, list dst_roots,
                   list dst_keys, object limiter=None):
        """Copy file i from `roots[src_roots[i]]/src_keys[i]` to
        `roots[dst_roots[i]]/dst_keys[i]`, for every i, in one call without the GIL.

        `roots` are folder paths (bytes; destination roots must exist), keys are bytes.
        `limiter` (a RateLimiter of bytes, or None): the data moves in slices, each
        waited for (the GIL taken back only to ask the limiter).
        Returns (bytes copied in total, [(i, errno, step), ...] for the files that failed).
        """
        # Tuples of our own: nothing can change them (or free the bytes they hold) while
        # the loop below reads their buffers without the GIL.
        cdef tuple R = tuple(roots), SR = tuple(src_roots), SK = tuple(src_keys)
        cdef tuple DR = tuple(dst_roots), DK = tuple(dst_keys)
        cdef Py_ssize_t n = len(SK), nroots = len(R), i, k
        cdef const char **rp
        cdef size_t *rl
        cdef const char **sk
        cdef size_t *skl
        cdef const char **dk
        cdef size_t *dkl
        cdef int *sr
        cdef int *dr
        cdef int *errs
        cdef int *steps
        cdef long long size = 0, total = 0
        cdef long long a, b
        cdef batchops_pace pace
        cdef const batchops_pace *paced = &pace if _pace_from(limiter, &pace) else NULL
        if len(SR) != n or len(DR) != n or len(DK) != n:
            raise ValueError("copy_files: the four per-file lists differ in length")
        for k in range(nroots):
            if type(R[k]) is not bytes or b"\0" in R[k]:
                raise ValueError("copy_files: roots must be bytes without NUL")
        for i in range(n):
            if type(SK[i]) is not bytes or type(DK[i]) is not bytes:
                raise TypeError("copy_files: keys must be bytes")
        rp = <const char **>malloc((nroots + 1) * sizeof(char *))
        rl = <size_t *>malloc((nroots + 1) * sizeof(size_t))
        sk = <const char **>malloc((n + 1) * sizeof(char *))
        dk = <const char **>malloc((n + 1) * sizeof(char *))
        skl = <size_t *>malloc((n + 1) * sizeof(size_t))
        dkl = <size_t *>malloc((n + 1) * sizeof(size_t))
        sr = <int *>malloc((n + 1) * sizeof(int))
        dr = <int *>malloc((n + 1) * sizeof(int))
        errs = <int *>malloc((n + 1) * sizeof(int))
        steps = <int *>malloc((n + 1) * sizeof(int))
        try:
            if not (rp and rl and sk and dk and skl and dkl and sr and dr and errs and steps):
                raise MemoryError()
            for k in range(nroots):
                rp[k] = PyBytes_AS_STRING(R[k])
                rl[k] = <size_t>PyBytes_GET_SIZE(R[k])
            for i in range(n):
                sk[i] = PyBytes_AS_STRING(SK[i])
                skl[i] = <size_t>PyBytes_GET_SIZE(SK[i])
                dk[i] = PyBytes_AS_STRING(DK[i])
                dkl[i] = <size_t>PyBytes_GET_SIZE(DK[i])
                a, b = SR[i], DR[i]  # converted once (OverflowError beyond 64 bits),
                if not (0 <= a < nroots and 0 <= b < nroots):  # then checked
                    raise IndexError(f"copy_files: file {i} names a root outside "
                                     f"0..{nroots - 1}")
                sr[i] = <int>a
                dr[i] = <int>b
            with nogil:
                for i in range(n):
                    errs[i] = batchops_copy_item(&self.c, rp[sr[i]], rl[sr[i]], sk[i], skl[i],
                                                 rp[dr[i]], rl[dr[i]], dk[i], dkl[i],
                                                 &self.rng, &size, &steps[i], paced)
                    if errs[i] == 0:
                        total += size
            failed = [(i, errs[i], steps[i]) for i in range(n) if errs[i] != 0]
        finally:
            free(rp); free(rl); free(sk); free(dk); free(skl); free(dkl)
            free(sr); free(dr); free(errs); free(steps)
        return total, failed

    def open_beneath(self, bytes root, bytes key):
        """A descriptor (the caller closes it) of the regular file `key` below `root`,
        opened for reading without following a symlink."""
        cdef int err = 0, step = 0, fd
        cdef const char *r = root
        cdef const char *k = key
        cdef size_t rl = len(root), kl = len(key)
        if b"\0" in root:
            raise ValueError("open_beneath: root holds NUL")
        with nogil:
            fd = batchops_open_read(&self.c, r, rl, k, kl, &err, &step)
        if fd < 0:
            raise _error(err, step)
        return fd

    def create_temp(self, bytes root, bytes key):
        """A new locked temporary for destination `key` below `root`: (its folder's
        descriptor, the temporary's descriptor, the temporary's name, the destination's
        name). Hand all four to `commit_temp` or `abort_temp`."""
        cdef char tmp[32]
        cdef char name[256]
        cdef int err = 0, step = 0, fd, dfd = -1
        cdef const char *r = root
        cdef const char *k = key
        cdef size_t rl = len(root), kl = len(key)
        if b"\0" in root:
            raise ValueError("create_temp: root holds NUL")
        with nogil:
            fd = batchops_create_temp(&self.c, r, rl, k, kl, &self.rng, &dfd, tmp, name, &err,
                                      &step)
        if fd < 0:
            raise _error(err, step)
        return dfd, fd, <bytes>tmp, <bytes>name

    def unlink_beneath(self, bytes root, bytes key):
        """Remove the file `key` below `root`, following no symlink."""
        cdef int err, step = 0
        cdef const char *r = root
        cdef const char *k = key
        cdef size_t rl = len(root), kl = len(key)
        if b"\0" in root:
            raise ValueError("unlink_beneath: root holds NUL")
        with nogil:
            err = batchops_unlink(&self.c, r, rl, k, kl, &step)
        if err:
            raise _error(err, step)


def commit_temp(int dir_fd, int fd, bytes tmp, bytes name):
    """Rename a temporary from `DirCache.create_temp` into place and close both
    descriptors (also on failure, when the temporary is removed)."""
    cdef int err
    cdef const char *t = tmp
    cdef const char *n = name
    with nogil:
        err = batchops_commit(dir_fd, fd, t, n)
    if err:
        raise _error(err, 3)


def abort_temp(int dir_fd, int fd, bytes tmp):
    """Remove a temporary from `DirCache.create_temp` and close both descriptors."""
    cdef const char *t = tmp
    with nogil:
        batchops_abort(dir_fd, fd, t)


def sync_filesystem(bytes path):
    """syncfs(2) the filesystem holding folder `path`: everything written to it so far is
    on stable storage when this returns."""
    cdef int err
    cdef const char *p = path
    if b"\0" in path:
        raise ValueError("sync_filesystem: path holds NUL")
    with nogil:
        err = batchops_syncfs(p)
    if err:
        import os

        raise OSError(err, os.strerror(err), path)


def copy_at(int src_dir, bytes src_name, int dst_dir, bytes tmp_name, bytes dst_name):
    """Copy `src_dir/src_name` to `dst_dir/dst_name` through `dst_dir/tmp_name`; return
    the number of bytes copied. Raises OSError (with `filename` set to the failed step)."""
    cdef long long size = 0
    cdef int step = 0
    cdef int err
    cdef const char *src = src_name
    cdef const char *tmp = tmp_name
    cdef const char *dst = dst_name
    with nogil:
        err = batchops_copy_at(src_dir, src, dst_dir, tmp, dst, &size, &step, NULL)
    if err:
        raise _error(err, step)
    return size
