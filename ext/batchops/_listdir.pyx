# cython: language_level=3
"""A folder's entries with their sizes and times, read in the kernel without the GIL:
the listing side of a local folder (`Walker`: manifest/listing.py's walk of a tree;
`diff` and `--skip-unchanged` list both sides of a migration with it, in two threads).

Measured before this module, on 20,000 files: os.scandir + DirEntry.stat took ~6.5 µs per
file in Python, of which the system calls (getdents64, fstatat) are ~2; a re-run of a
finished copy spent more than half of its time listing.

Rules the code relies on:
- The sandbox (as in _localfs.pyx): a folder is opened with O_NOFOLLOW | O_DIRECTORY, so
  a symlink at its name is refused (ELOOP/ENOTDIR), never followed (except the root of a
  walk, which may be a symlink: `Scanner(path, follow=True)`); entries that are
  symlinks are never returned, and every size and time is read by fstatat with
  AT_SYMLINK_NOFOLLOW relative to the folder's own descriptor.
- Only regular files and folders are returned; a name whose type readdir leaves unknown
  (DT_UNKNOWN) is typed by its fstatat.
- Memory stays bounded: `Scanner.batch(n)` and `Walker.batch(n)` return at most `n`
  entries a call, so a folder of millions of files is never held whole. The GIL is
  released for each batch's system calls (a Walker's batch crosses folders without
  it); the batch's names and numbers are kept in C arrays of size `n` (checked at the
  call; a Walker's keys in one buffer grown to fit them) until Python objects are made
  for them.
- An entry removed between readdir and fstatat is skipped (ENOENT), as the walk in
  Python did.
"""

from cpython.bytes cimport PyBytes_FromStringAndSize
from libc.errno cimport ELOOP, ENOENT, ENOTDIR, errno
from libc.stdint cimport int64_t
from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memcmp, memcpy, strlen

cdef extern from "Python.h":
    # os.fsdecode in C: the file system encoding, surrogateescape for undecodable bytes.
    str PyUnicode_DecodeFSDefaultAndSize(const char *s, Py_ssize_t size)

cdef extern from *:
    """
    #include <dirent.h>
    #include <fcntl.h>
    #include <sys/stat.h>
    #include <unistd.h>
    #define BATCHOPS_MTIME_NS(st) ((int64_t)(st).st_mtim.tv_sec * 1000000000LL + (st).st_mtim.tv_nsec)
    """
    ctypedef struct DIR:
        pass
    struct dirent:
        unsigned char d_type
        char *d_name
    struct stat_t "stat":
        long st_size
        unsigned int st_mode
    int open(const char *path, int flags) nogil
    int close(int fd) nogil
    DIR *fdopendir(int fd) nogil
    dirent *readdir(DIR *d) nogil
    int closedir(DIR *d) nogil
    int dirfd(DIR *d) nogil
    int fstatat(int dirfd, const char *name, stat_t *st, int flags) nogil
    int64_t BATCHOPS_MTIME_NS(stat_t st) nogil
    int S_ISREG(unsigned int mode) nogil
    int S_ISDIR(unsigned int mode) nogil
    int O_RDONLY, O_DIRECTORY, O_NOFOLLOW, O_CLOEXEC, AT_SYMLINK_NOFOLLOW
    unsigned char DT_REG, DT_DIR, DT_UNKNOWN

#: Bytes of names a batch keeps (a name is at most 255 bytes plus its NUL).
DEF NAME_ROOM = 256


cdef inline int _kind(DIR *folder, dirent *ent, stat_t *st, size_t *length) noexcept nogil:
    """What a folder's entry is: 0 a regular file (`st` filled), 1 a folder, -1 neither
    (".", "..", a symlink, device, FIFO or socket, a name too long, or an entry removed
    since readdir); `length` is set to its name's."""
    cdef unsigned char kind = ent.d_type
    if ent.d_name[0] == b'.' and (ent.d_name[1] == 0 or (
            ent.d_name[1] == b'.' and ent.d_name[2] == 0)):
        return -1
    if kind != DT_REG and kind != DT_DIR and kind != DT_UNKNOWN:
        return -1  # a symlink, device, FIFO or socket
    length[0] = strlen(ent.d_name)
    if length[0] >= NAME_ROOM:
        return -1  # (no file system here has longer names)
    if kind == DT_DIR:
        return 1
    if fstatat(dirfd(folder), ent.d_name, st, AT_SYMLINK_NOFOLLOW) != 0:
        return -1  # removed since readdir (ENOENT), or unreadable
    if S_ISDIR(st.st_mode):
        return 1
    return 0 if S_ISREG(st.st_mode) else -1


cdef class Scanner:
    """The regular files and folders of one folder, a batch at a time: each entry is
    (name as bytes, is a folder, size in bytes, modification time in ns since the
    epoch). A folder's size and time are 0."""

    cdef DIR *_dir
    cdef bint _done

    def __cinit__(self, bytes path, bint follow=False):
        cdef const char *c_path = path
        cdef int fd
        cdef int flags = O_RDONLY | O_DIRECTORY | O_CLOEXEC | (0 if follow else O_NOFOLLOW)
        with nogil:
            fd = open(c_path, flags)
        if fd < 0:
            raise OSError(errno, _strerror(errno), path.decode("utf-8", "surrogateescape"))
        self._dir = fdopendir(fd)
        if self._dir == NULL:
            err = errno
            close(fd)
            raise OSError(err, _strerror(err), path.decode("utf-8", "surrogateescape"))
        self._done = False

    def __dealloc__(self):
        if self._dir != NULL:
            closedir(self._dir)
            self._dir = NULL

    def close(self) -> None:
        """Close the folder now (also done when the scanner is freed)."""
        if self._dir != NULL:
            closedir(self._dir)
            self._dir = NULL
        self._done = True

    def batch(self, int n=1024) -> list:
        """Up to `n` more entries (n >= 1); an empty list once the folder is read."""
        if n < 1:
            raise ValueError("n must be at least 1")
        if self._done or self._dir == NULL:
            return []
        cdef char *names = <char *>malloc(<size_t>n * NAME_ROOM)
        cdef int64_t *sizes = <int64_t *>malloc(<size_t>n * sizeof(int64_t))
        cdef int64_t *times = <int64_t *>malloc(<size_t>n * sizeof(int64_t))
        cdef char *kinds = <char *>malloc(<size_t>n)
        if names == NULL or sizes == NULL or times == NULL or kinds == NULL:
            free(names); free(sizes); free(times); free(kinds)
            raise MemoryError()
        cdef int count = 0, kind
        cdef dirent *ent
        cdef stat_t st
        cdef size_t length
        cdef bint end = False
        cdef char *name
        try:
            with nogil:
                while count < n:
                    ent = readdir(self._dir)
                    if ent == NULL:
                        end = True
                        break
                    kind = _kind(self._dir, ent, &st, &length)
                    if kind < 0:
                        continue
                    kinds[count] = kind
                    sizes[count] = st.st_size if kind == 0 else 0
                    times[count] = BATCHOPS_MTIME_NS(st) if kind == 0 else 0
                    memcpy(names + <size_t>count * NAME_ROOM, ent.d_name, length + 1)
                    count += 1
            if end:
                self.close()
            out = [None] * count
            for i in range(count):
                name = names + <size_t>i * NAME_ROOM
                out[i] = (PyBytes_FromStringAndSize(name, strlen(name)), kinds[i] == 1,
                          sizes[i], times[i])
            return out
        finally:
            free(names); free(sizes); free(times); free(kinds)


cdef struct Folder:
    char *key  # the folder's key with its trailing "/" ("" for the root), NUL-ended
    size_t length


cdef class Walker:
    """The regular files below a folder, walked in C: each call to `batch(n)` lists up
    to `n` more files, going from folder to folder without the GIL (a walk in another
    thread, or Python's own work, never waits for this one, nor this one for them
    between folders), and returns them as (key, size in bytes, mtime in ns): the path
    below the root, decoded as os.fsdecode does. The rules of `Scanner` hold, and those
    of manifest/listing.py's walk: the root may be a symlink (a folder below it is opened
    with O_NOFOLLOW: one replaced by a symlink, a file or nothing while it is walked is
    not entered); only keys starting with `prefix` are listed, and only folders that can
    hold such keys are entered; a file named like a temporary (`skip_length` bytes,
    `skip_start` ... `skip_end`) is left out. Folders are visited depth first, each
    read whole before the folders it holds (the names of folders still to visit are
    the only state kept, as in the walk in Python)."""

    cdef bytes _root, _prefix, _skip_start, _skip_end  # kept: the pointers below are theirs
    cdef const char *_start
    cdef const char *_end
    cdef size_t _skip_length, _start_length, _end_length
    cdef DIR *_dir
    cdef Folder _here
    cdef Folder *_stack  # folders still to visit: the last is visited next
    cdef size_t _depth, _room
    cdef Folder *_found  # folders of the one being read: stacked once it is read
    cdef size_t _nfound, _found_room
    cdef bint _started

    def __cinit__(self, bytes root, bytes prefix=b"", bytes skip_start=b"",
                  bytes skip_end=b"", size_t skip_length=0):
        self._root, self._prefix = root, prefix
        self._skip_start, self._skip_end, self._skip_length = skip_start, skip_end, skip_length
        if skip_length and len(skip_start) + len(skip_end) > skip_length:
            raise ValueError("skip_start and skip_end are longer than skip_length")
        self._start, self._start_length = skip_start, len(skip_start)
        self._end, self._end_length = skip_end, len(skip_end)
        self._dir = NULL
        self._here.key = NULL
        self._stack = NULL
        self._found = NULL
        self._depth = self._room = self._nfound = self._found_room = 0
        self._started = False

    def __dealloc__(self):
        cdef size_t i
        if self._dir != NULL:
            closedir(self._dir)
        free(self._here.key)
        for i in range(self._depth):
            free(self._stack[i].key)
        for i in range(self._nfound):
            free(self._found[i].key)
        free(self._stack)
        free(self._found)

    def batch(self, int n=1024) -> list:
        """Up to `n` more files (n >= 1); an empty list once the walk is done."""
        if n < 1:
            raise ValueError("n must be at least 1")
        cdef char *keys = NULL  # the batch's keys, one after another, NUL-ended
        cdef size_t used = 0, room = 0
        cdef size_t *at = <size_t *>malloc(<size_t>n * sizeof(size_t))
        cdef int64_t *sizes = <int64_t *>malloc(<size_t>n * sizeof(int64_t))
        cdef int64_t *times = <int64_t *>malloc(<size_t>n * sizeof(int64_t))
        if at == NULL or sizes == NULL or times == NULL:
            free(at); free(sizes); free(times)
            raise MemoryError()
        cdef int count = 0, failed = 0, kind
        cdef dirent *ent
        cdef stat_t st
        cdef size_t length, klen
        cdef bint folder
        cdef const char *root = self._root
        cdef size_t root_length = len(self._root)
        cdef const char *prefix = self._prefix
        cdef size_t prefix_length = len(self._prefix)
        cdef char *key
        try:
            with nogil:
                while count < n:
                    if self._dir == NULL:
                        if not self._next_folder(root, root_length, &failed):
                            break  # the walk is done, or a folder could not be opened
                        continue
                    ent = readdir(self._dir)
                    if ent == NULL:  # this folder is read: the folders it holds are next
                        closedir(self._dir)
                        self._dir = NULL
                        if self._stack_found() != 0:
                            failed = -1
                            break
                        continue
                    kind = _kind(self._dir, ent, &st, &length)
                    if kind < 0:
                        continue
                    folder = kind == 1
                    klen = self._here.length + length
                    if folder:
                        if _starts(self._here.key, self._here.length, ent.d_name, length,
                                   prefix, prefix_length) or _holds(
                                self._here.key, self._here.length, ent.d_name, length,
                                prefix, prefix_length):
                            if self._add_found(ent.d_name, length) != 0:
                                failed = -1
                                break
                        continue
                    if not _starts(self._here.key, self._here.length, ent.d_name, length,
                                   prefix, prefix_length) or self._temporary(ent.d_name,
                                                                              length):
                        continue
                    if used + klen + 1 > room:
                        room = (used + klen + 1) * 2
                        key = <char *>realloc(keys, room)
                        if key == NULL:
                            failed = -1
                            break
                        keys = key
                    memcpy(keys + used, self._here.key, self._here.length)
                    memcpy(keys + used + self._here.length, ent.d_name, length + 1)
                    at[count] = used
                    sizes[count] = st.st_size
                    times[count] = BATCHOPS_MTIME_NS(st)
                    used += klen + 1
                    count += 1
            if failed == -1:
                raise MemoryError()
            if failed > 0:
                where = self._root + b"/" + self._here.key[:self._here.length]
                raise OSError(failed, _strerror(failed),
                              where.decode("utf-8", "surrogateescape"))
            out = [None] * count
            for i in range(count):
                key = keys + at[i]
                out[i] = (PyUnicode_DecodeFSDefaultAndSize(key, strlen(key)), sizes[i],
                          times[i])
            return out
        finally:
            free(keys); free(at); free(sizes); free(times)

    cdef bint _next_folder(self, const char *root, size_t root_length,
                           int *failed) noexcept nogil:
        """Open the next folder to read (True), or say the walk is done (False; `failed`
        set to the errno of a folder that could not be opened, for a reason other than
        its being gone or not a folder now)."""
        cdef char *path
        cdef int fd, flags
        while True:
            free(self._here.key)
            self._here.key = NULL
            if not self._started:
                self._started = True
                self._here.key = <char *>malloc(1)
                if self._here.key == NULL:
                    failed[0] = -1
                    return False
                self._here.key[0] = 0
                self._here.length = 0
                flags = O_RDONLY | O_DIRECTORY | O_CLOEXEC  # the root may be a symlink
            elif self._depth == 0:
                return False
            else:
                self._depth -= 1
                self._here = self._stack[self._depth]
                flags = O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW
            path = <char *>malloc(root_length + 1 + self._here.length + 1)
            if path == NULL:
                failed[0] = -1
                return False
            memcpy(path, root, root_length)
            path[root_length] = b'/'
            memcpy(path + root_length + 1, self._here.key, self._here.length)
            path[root_length + 1 + self._here.length] = 0
            fd = open(path, flags)
            free(path)
            if fd >= 0:
                self._dir = fdopendir(fd)
                if self._dir != NULL:
                    return True
                close(fd)
            if errno != ENOENT and errno != ENOTDIR and errno != ELOOP:
                failed[0] = errno
                return False
            # removed, or replaced by a file or a symlink, while listing: not entered

    cdef int _add_found(self, const char *name, size_t length) noexcept nogil:
        cdef Folder *grown
        cdef char *key
        if self._nfound == self._found_room:
            self._found_room = self._found_room * 2 + 16
            grown = <Folder *>realloc(self._found, self._found_room * sizeof(Folder))
            if grown == NULL:
                return -1
            self._found = grown
        key = <char *>malloc(self._here.length + length + 2)
        if key == NULL:
            return -1
        memcpy(key, self._here.key, self._here.length)
        memcpy(key + self._here.length, name, length)
        key[self._here.length + length] = b'/'
        key[self._here.length + length + 1] = 0
        self._found[self._nfound].key = key
        self._found[self._nfound].length = self._here.length + length + 1
        self._nfound += 1
        return 0

    cdef int _stack_found(self) noexcept nogil:
        """The folders found in the one just read go on the stack, in the order found."""
        cdef Folder *grown
        cdef size_t i
        if self._depth + self._nfound > self._room:
            self._room = (self._depth + self._nfound) * 2
            grown = <Folder *>realloc(self._stack, self._room * sizeof(Folder))
            if grown == NULL:
                return -1
            self._stack = grown
        for i in range(self._nfound):
            self._stack[self._depth] = self._found[i]
            self._depth += 1
        self._nfound = 0
        return 0

    cdef bint _temporary(self, const char *name, size_t length) noexcept nogil:
        return length == self._skip_length and self._skip_length > 0 and \
            memcmp(name, self._start, self._start_length) == 0 and \
            memcmp(name + length - self._end_length, self._end, self._end_length) == 0


cdef inline bint _starts(const char *sub, size_t sub_length, const char *name,
                         size_t length, const char *prefix,
                         size_t prefix_length) noexcept nogil:
    """Whether the key `sub` + `name` starts with `prefix`."""
    if prefix_length <= sub_length:
        return memcmp(sub, prefix, prefix_length) == 0
    if memcmp(sub, prefix, sub_length) != 0:
        return False
    if prefix_length - sub_length > length:
        return False
    return memcmp(name, prefix + sub_length, prefix_length - sub_length) == 0


cdef inline bint _holds(const char *sub, size_t sub_length, const char *name,
                        size_t length, const char *prefix,
                        size_t prefix_length) noexcept nogil:
    """Whether `prefix` starts with the folder key `sub` + `name` + "/"."""
    if sub_length + length + 1 > prefix_length:
        return False
    return memcmp(prefix, sub, sub_length) == 0 and \
        memcmp(prefix + sub_length, name, length) == 0 and \
        prefix[sub_length + length] == b'/'


cdef str _strerror(int err):
    import os
    return os.strerror(err)


__all__ = ["Scanner", "Walker"]
