"""Local folders: the copy between folders, in the kernel, and the sandbox every local
read, write, delete and listing obeys.

**The sandbox rule.** A `file://` URL names a root folder (the root itself may be a
symlink). Below it, batchops follows no symlink, ever: a key whose path goes through a
symlink, folder or file, fails its task with 403 AccessDenied, and a listing skips
symlinks. Each folder of a key is opened from its parent's descriptor with O_NOFOLLOW,
and the file itself with O_NOFOLLOW (ext/batchops/_localfs.pyx). Every object read,
written or deleted in a folder goes through here (copies between folders and to or from
other stores, checksums, deletes), never through obstore's local store.

**Copies.** A folder-to-folder copy is written to an unnamed file (O_TMPFILE) in the
destination folder and linked at its name once whole, so the destination appears whole
or not at all and a killed copy leaves nothing. Over an existing file, for writes from
other stores, and on filesystems without O_TMPFILE, a copy goes to a temporary file in
the destination folder, named `.batchops-<16 hex>.tmp` (30 bytes, so a 255-byte file
name copies), never written through anything already there, and renamed into place.
The name is a hash of the destination's, so the next copy of the same key (a resume
re-runs every chunk a kill interrupted) removes the temporary a killed copy left, once
nobody holds its lock. A whole chunk is copied in one call (`copy_chunk`), without
the GIL; files are opened and renamed relative to open folder descriptors, held for one
chunk at most, so a folder deleted or replaced by hand during a job is looked up again by
the next chunk.

**Durability.** `make_durable()` syncs (syncfs(2)) every filesystem the copier has
written to: the task loop calls it before a chunk's marker is written, so a committed
chunk's copies survive a power cut.
"""

from __future__ import annotations

import errno
import os
import sys
import threading
from collections.abc import AsyncIterable, Iterable, Iterator, Sequence
from typing import Any

from batchops._localfs import (
    STEP_KEY,
    STEPS,
    TEMP_PREFIX,
    DirCache,
    abort_temp,
    commit_temp,
    sync_filesystem,
)
from batchops.storage.outcomes import TaskError

MAX_OPEN_DIRS = 64  # per thread (the native cache's size); a chunk's keys are usually in a few
_SOURCE, _RENAME, _DEST_DIR = 0, 3, 5


def safe_relative(key: str) -> str:
    """A key as a path under a folder, as obstore's local store accepts it: leading and
    trailing slashes dropped; `..`, `.`, empty segments and NUL refused."""
    rel = key.strip("/")
    padded = f"/{rel}/"
    if not rel or "\x00" in rel or "//" in rel or "/./" in padded or "/../" in padded:
        raise _unsafe(key)
    return rel


#: The length of every name `is_temporary` accepts (all ASCII), and how it ends.
TEMPORARY_NAME_LENGTH, TEMP_SUFFIX = 30, ".tmp"


def is_temporary(name: str) -> bool:
    """Whether a file name is one of batchops' copy temporaries (never an object)."""
    return len(name) == TEMPORARY_NAME_LENGTH and name.startswith(TEMP_PREFIX) and \
        name.endswith(TEMP_SUFFIX)


def _unsafe(key: str) -> TaskError:
    return TaskError(400, "InvalidObjectKey",
                     f"the key {key[:100]!r} is not a safe path under a folder (.., ., empty "
                     "segment or NUL)")


class FolderCopier:
    """Copies, checks and deletes files below local folders; `release()` closes the
    folders it holds (call it when a chunk ends). One instance may serve several threads:
    each has its own descriptors."""

    def __init__(self) -> None:
        self._local = threading.local()
        self._lock = threading.Lock()
        # Destination roots ever written: make_durable syncs them all, every time. (Not
        # only those written "since the last call": a chunk finishing on another thread
        # would then take out a root whose copies, of a chunk still running, come after
        # its sync. A syncfs with nothing to write costs little.)
        self._written: set[str] = set()
        self._made: set[str] = set()  # destination roots known to exist
        self._copied = 0  # bytes copied since take_bytes
        # For bench/local_copy.py only: the cost of durability, measured in one run.
        self._skip_sync = os.environ.get("BATCHOPS_BENCH_NO_SYNCFS") == "1"

    def _cache(self) -> DirCache:
        cache: DirCache | None = getattr(self._local, "cache", None)
        if cache is None:
            cache = self._local.cache = DirCache()
        return cache

    def release(self) -> None:
        self._cache().release()

    def _dest_root(self, root: str) -> bytes:
        if root not in self._made:
            os.makedirs(root, exist_ok=True)
            with self._lock:
                self._made.add(root)
                self._written.add(root)
        return os.fsencode(root)

    def copy(self, src_root: str, src_key: str, dst_root: str, dst_key: str,
             limiter: Any = None) -> int:
        """Copy one file; returns the number of bytes copied. `limiter`: a RateLimiter of
        bytes that paces the copy as it goes (None: no limit)."""
        total, failed = self._cache().copy_files(
            [os.fsencode(src_root or "/"), self._dest_root(dst_root or "/")], [0], [
                os.fsencode(src_key)], [1], [os.fsencode(dst_key)], limiter)
        if failed:
            _, err, step = failed[0]
            raise _task_error(err, step, src_key if step != _DEST_DIR else dst_key)
        self._count(int(total))
        return int(total)

    def _count(self, n: int) -> None:
        with self._lock:
            self._copied += n

    def take_bytes(self) -> int:
        """The bytes of the files copied since the last call."""
        with self._lock:
            n, self._copied = self._copied, 0
        return n

    def copy_chunk(self, items: Sequence[tuple[str, str, str, str]],
                   limiter: Any = None) -> list[Exception | None]:
        """Copy many files in one native call: (source root, source key, destination
        root, destination key) each. One entry per item: None, or what it failed with.
        `limiter`: as for `copy`."""
        sources: dict[str, int] = {}
        targets: dict[str, int] = {}  # (created first)
        root_paths: list[bytes] = []
        src_roots, src_keys, dst_roots, dst_keys = [], [], [], []
        encoding, errors = sys.getfilesystemencoding(), sys.getfilesystemencodeerrors()
        last_src = last_dst = None
        s = d = 0
        for src_root, src_key, dst_root, dst_key in items:
            if src_root != last_src:  # (one root for a whole chunk, as a rule)
                last_src, s = src_root, sources.get(src_root, -1)
                if s < 0:
                    s = sources[src_root] = len(root_paths)
                    root_paths.append(os.fsencode(src_root or "/"))
            if dst_root != last_dst:
                last_dst, d = dst_root, targets.get(dst_root, -1)
                if d < 0:
                    d = targets[dst_root] = len(root_paths)
                    root_paths.append(self._dest_root(dst_root or "/"))
            src_roots.append(s)
            dst_roots.append(d)
            src_keys.append(src_key.encode(encoding, errors))
            dst_keys.append(dst_key.encode(encoding, errors))
        total, failed = self._cache().copy_files(root_paths, src_roots, src_keys, dst_roots,
                                                 dst_keys, limiter)
        self._count(int(total))
        out: list[Exception | None] = [None] * len(items)
        for i, err, step in failed:
            item = items[i]
            out[i] = _task_error(err, step, item[3] if step == _DEST_DIR else item[1])
        return out

    def open_source(self, root: str, key: str) -> int:
        """A descriptor of file `key` below `root` for reading (the caller closes it),
        found without following a symlink."""
        try:
            return self._cache().open_beneath(os.fsencode(root or "/"), os.fsencode(key))
        except OSError as exc:
            raise _task_error(exc.errno or 0, STEPS.index(str(exc.filename)), key) from None
        finally:
            self.release()

    def read_blocks(self, fd: int, block: int) -> Iterator[bytes]:
        """The contents of `fd` in blocks of at most `block` bytes; closes it at the end."""
        try:
            while data := os.read(fd, block):
                yield data
        finally:
            os.close(fd)

    def _create(self, root: str, key: str) -> tuple[int, int, bytes, bytes]:
        path = self._dest_root(root or "/")
        try:
            return self._cache().create_temp(path, os.fsencode(key))
        except OSError as exc:
            raise _task_error(exc.errno or 0, STEPS.index(str(exc.filename)), key) from None
        finally:
            self.release()

    def write(self, root: str, key: str, blocks: Iterable[bytes]) -> int:
        """Write file `key` below `root` from `blocks`, atomically (a locked temporary
        renamed into place), following no symlink. Returns the bytes written."""
        dir_fd, fd, tmp, name = self._create(root, key)
        try:
            size = sum(_write_all(fd, data) for data in blocks)
        except BaseException:
            abort_temp(dir_fd, fd, tmp)
            raise
        self._commit(dir_fd, fd, tmp, name, key)
        return size

    async def write_async(self, root: str, key: str, blocks: AsyncIterable[bytes]) -> int:
        """`write` from an async stream (the writes themselves are local and brief)."""
        dir_fd, fd, tmp, name = self._create(root, key)
        size = 0
        try:
            async for data in blocks:
                size += _write_all(fd, data)
        except BaseException:
            abort_temp(dir_fd, fd, tmp)
            raise
        self._commit(dir_fd, fd, tmp, name, key)
        return size

    @staticmethod
    def _commit(dir_fd: int, fd: int, tmp: bytes, name: bytes, key: str) -> None:
        try:
            commit_temp(dir_fd, fd, tmp, name)
        except OSError as exc:
            raise _task_error(exc.errno or 0, STEPS.index(str(exc.filename)), key) from None

    def unlink(self, root: str, key: str) -> None:
        """Delete file `key` below `root`, following no symlink."""
        try:
            self._cache().unlink_beneath(os.fsencode(root or "/"), os.fsencode(key))
        except OSError as exc:
            raise _task_error(exc.errno or 0, STEPS.index(str(exc.filename)), key) from None

    def written(self, root: str) -> None:
        """Note that files are written below `root` (by obstore): make_durable syncs it."""
        if root not in self._written:
            with self._lock:
                self._written.add(root)

    def make_durable(self) -> None:
        """syncfs every filesystem this copier has written to (once each): every copy that
        returned before this call is on stable storage when it returns."""
        with self._lock:
            roots = sorted(self._written)
        if self._skip_sync:
            return
        seen: set[int] = set()
        for root in roots:
            try:
                dev = os.stat(root).st_dev
            except FileNotFoundError:
                continue  # removed since: nothing of ours left to sync there
            if dev not in seen:
                seen.add(dev)
                sync_filesystem(os.fsencode(root))


def _write_all(fd: int, data: bytes | memoryview) -> int:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
    return len(data)


def _task_error(err: int, step: int, key: str) -> Exception:
    """The report's view of a failed local file operation: the source's faults are the
    key's; a symlink below the root is refused; faults of the target or the machine
    (a full disk, EMFILE, EACCES) stay OSErrors, for the error classes to sort."""
    if step == STEP_KEY:
        return _unsafe(key)
    if err == errno.ELOOP:
        return TaskError(403, "AccessDenied", "the key's path goes through a symbolic link: "
                         "batchops follows no symlink below a file:// folder")
    if err == errno.ENAMETOOLONG:
        return TaskError(400, "InvalidObjectKey", "a folder or file name in the key is longer "
                         "than the filesystem allows (255 bytes)")
    if step == _SOURCE:
        if err in (errno.ENOENT, errno.ENOTDIR):
            return TaskError(404, "NoSuchKey", "The specified key does not exist.")
        if err == errno.EISDIR:
            return TaskError(400, "InvalidObjectKey", "the key names a folder, not a file")
        if err == errno.EINVAL:
            return TaskError(400, "InvalidObjectKey", "the key names a FIFO, socket or "
                             "device, not a regular file")
    elif err in (errno.ENOENT, errno.ENOTDIR):
        # A file where a folder should be, or a folder removed under the copy: the
        # target's state, not the key's; a rename that lost its temporary is retried.
        return TaskError(500, "InternalError", f"could not {STEPS[step]}: {os.strerror(err)}",
                         retryable=step == _RENAME and err == errno.ENOENT)
    exc = OSError(err, os.strerror(err), STEPS[step])
    return exc
