"""Local folders: the whole-chunk native copy, the sandbox (no symlink followed below a
file:// root, for copies, deletes and listings), temporaries (short names, removed by the
next copy after a kill -9) and owner-only job files. Through the real CLI where a user
meets them."""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from batchops._localfs import DirCache, temp_name
from batchops.model.chunk import Chunk
from batchops.operations.copy import CopyOperation
from batchops.storage.localfs import FolderCopier
from batchops.storage.locations import Resolver
from batchops.storage.outcomes import TaskError
from helpers import decoded_keys, job_id_of, read_report, report_manifest_path, write_manifest
from test_resume import _wait_for_job
from test_workers import _workers


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if not p.is_dir())


def _rows_by_key(cli, proc) -> dict[str, list[str]]:  # type: ignore[no-untyped-def]
    _, rows = read_report(report_manifest_path(cli.home, job_id_of(proc.stdout)))
    return dict(zip(decoded_keys(rows), rows, strict=True))


# -- the sandbox -------------------------------------------------------------------------


def test_a_symlinked_folder_in_the_target_does_not_redirect_writes(cli, tmp_path) -> None:
    src, out, outside = tmp_path / "src", tmp_path / "out", tmp_path / "outside"
    for d in (src / "sub", out, outside):
        d.mkdir(parents=True)
    (src / "sub" / "x").write_bytes(b"data")
    (src / "y").write_bytes(b"fine")
    os.symlink(outside, out / "sub")  # the target holds a symlink to a folder elsewhere
    m = write_manifest(tmp_path / "m.csv", [(f"file://{src}", "sub/x"), (f"file://{src}", "y")])
    proc = cli("run", "--manifest", str(m), "--operation", "copy", "--target", f"file://{out}",
               "--json", "--no-progress")
    assert proc.returncode == 1, proc.stderr
    assert list(outside.iterdir()) == []
    rows = _rows_by_key(cli, proc)
    assert rows["sub/x"][3:6] == ["failed", "403", "AccessDenied"]
    assert "symbolic link" in rows["sub/x"][6]
    assert rows["y"][3] == "succeeded" and (out / "y").read_bytes() == b"fine"


def test_a_symlink_in_the_source_is_not_read_through(cli, tmp_path) -> None:
    src, out, secret = tmp_path / "src", tmp_path / "out", tmp_path / "secret"
    src.mkdir()
    secret.mkdir()
    (secret / "key").write_bytes(b"private")
    os.symlink(secret, src / "dir")
    os.symlink(secret / "key", src / "file")
    m = write_manifest(tmp_path / "m.csv", [(f"file://{src}", "dir/key"),
                                            (f"file://{src}", "file")])
    proc = cli("run", "--manifest", str(m), "--operation", "copy", "--target", f"file://{out}",
               "--json", "--no-progress")
    assert proc.returncode == 1, proc.stderr
    assert {r[5] for r in _rows_by_key(cli, proc).values()} == {"AccessDenied"}
    assert not out.exists() or _files(out) == []


def test_delete_does_not_remove_a_file_through_a_symlinked_folder(cli, tmp_path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (outside / "victim").write_bytes(b"keep me")
    (root / "mine").write_bytes(b"delete me")
    os.symlink(outside, root / "link")
    m = write_manifest(tmp_path / "m.csv", [(f"file://{root}", "link/victim"),
                                            (f"file://{root}", "mine")])
    proc = cli("run", "--manifest", str(m), "--operation", "delete", "--confirm-delete",
               "--json", "--no-progress")
    assert proc.returncode == 1, proc.stderr
    assert (outside / "victim").read_bytes() == b"keep me"
    assert not (root / "mine").exists()
    rows = _rows_by_key(cli, proc)
    assert rows["link/victim"][3:6] == ["failed", "403", "AccessDenied"]
    assert rows["mine"][3] == "succeeded"


def test_a_checksum_does_not_read_through_a_symlink(cli, tmp_path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (outside / "secret").write_bytes(b"private")
    (root / "mine").write_bytes(b"mine")
    os.symlink(outside, root / "dir")
    m = write_manifest(tmp_path / "m.csv", [(f"file://{root}", "dir/secret"),
                                            (f"file://{root}", "mine")])
    proc = cli("run", "--manifest", str(m), "--operation", "compute-checksum",
               "--checksum-algorithm", "SHA256", "--json", "--no-progress")
    assert proc.returncode == 1, proc.stderr
    rows = _rows_by_key(cli, proc)
    assert rows["dir/secret"][3:6] == ["failed", "403", "AccessDenied"]
    assert rows["mine"][3] == "succeeded"


def test_a_listing_does_not_walk_a_symlink_out_of_the_folder(cli, tmp_path) -> None:
    root, outside, out = tmp_path / "listed", tmp_path / "outside", tmp_path / "out"
    (root / "real").mkdir(parents=True)
    (root / "real" / "a").write_bytes(b"a")
    (root / "b").write_bytes(b"b")
    outside.mkdir()
    for i in range(3):
        (outside / f"passwd{i}").write_bytes(b"not yours")
    os.symlink(outside, root / "etc")  # a symlinked folder
    os.symlink(outside / "passwd0", root / "shadow")  # a symlinked file
    proc = cli("run", "--from-listing", f"file://{root}", "--operation", "copy", "--target",
               f"file://{out}", "--json", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert sorted(_rows_by_key(cli, proc)) == ["b", "real/a"]
    assert _files(out) == ["b", "real/a"]


def test_the_root_itself_may_be_a_symlink(cli, tmp_path) -> None:
    real, out = tmp_path / "real", tmp_path / "out"
    (real / "d").mkdir(parents=True)
    (real / "d" / "f").write_bytes(b"f")
    os.symlink(real, tmp_path / "alias")
    os.symlink(tmp_path / "outreal", out)
    (tmp_path / "outreal").mkdir()
    m = write_manifest(tmp_path / "m.csv", [(f"file://{tmp_path / 'alias'}", "d/f")])
    proc = cli("run", "--manifest", str(m), "--operation", "copy", "--target", f"file://{out}",
               "--json", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "outreal" / "d" / "f").read_bytes() == b"f"


# -- temporaries ---------------------------------------------------------------------------


def test_a_255_byte_file_name_copies(cli, tmp_path) -> None:
    src, out = tmp_path / "src", tmp_path / "out"
    (src / "deep").mkdir(parents=True)
    names = ["n" * 255, "deep/" + "é" * 125 + "xyzab"]  # 255 bytes each (é is 2 bytes)
    for k in names:
        assert len(os.fsencode(k.rsplit("/", 1)[-1])) == 255
        (src / k).write_bytes(k.encode())
    m = write_manifest(tmp_path / "m.csv", [(f"file://{src}", k) for k in names])
    proc = cli("run", "--manifest", str(m), "--operation", "copy", "--target", f"file://{out}",
               "--json", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    for k in names:
        assert (out / k).read_bytes() == k.encode()
    assert _files(out) == sorted(names)  # no temporary left


def _unnamed_copies(pid: int, folder: Path) -> list[str]:
    """The unnamed files (O_TMPFILE) that process `pid`'s workers hold open in `folder`."""
    found = []
    for worker in _workers(pid):
        try:
            links = [os.readlink(fd) for fd in Path(f"/proc/{worker}/fd").iterdir()]
        except OSError:
            continue
        found += [t for t in links if t.startswith(f"{folder}/#") and t.endswith("(deleted)")]
    return found


def test_a_copy_killed_by_kill_9_leaves_nothing_and_resume_completes(cli, tmp_path) -> None:
    """A copy is written to an unnamed file (O_TMPFILE) and linked at its name once
    whole: kill -9 in the middle of it leaves nothing at the target, neither the file
    nor a temporary; resume copies it."""
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    out.mkdir()
    big = src / "big.bin"
    with open(big, "wb") as f:  # large enough that its copy is seen in progress
        block = os.urandom(1 << 20)
        for _ in range(256):
            f.write(block)
    keys = ["big.bin"] + [f"small{i}" for i in range(20)]
    for k in keys[1:]:
        (src / k).write_bytes(k.encode())
    m = write_manifest(tmp_path / "m.csv", [(f"file://{src}", k) for k in keys])
    proc = cli.popen("run", "--manifest", str(m), "--operation", "copy", "--target",
                     f"file://{out}", "--workers", "1", "--no-progress",
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                     start_new_session=True)
    job_id = _wait_for_job(cli.home)
    deadline = time.monotonic() + 120
    while not _unnamed_copies(proc.pid, out):  # the copy of big.bin is under way
        assert proc.poll() is None, "the job ended before its copy was seen in progress"
        assert time.monotonic() < deadline
        time.sleep(0.0005)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "big.bin").exists()
    assert not [p for p in out.iterdir() if p.name.startswith(".batchops-")]
    resumed = cli("resume", job_id, "--json", "--no-progress")
    assert resumed.returncode == 0, resumed.stderr
    assert _files(out) == sorted(keys)
    assert (out / "big.bin").stat().st_size == big.stat().st_size
    _, rows = read_report(report_manifest_path(cli.home, job_id))
    assert Counter(decoded_keys(rows)) == Counter(keys)
    for path in (big, out / "big.bin"):  # 512 MiB: not kept in pytest's folders
        path.unlink()


def test_a_stray_temporary_is_taken_by_the_next_copy_over_an_existing_file(tmp_path) -> None:
    """Over an existing file a copy is linked at a locked temporary and renamed into
    place; a temporary a killed copy left there (nobody holds its lock) is taken."""
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    out.mkdir()
    (src / "a").write_bytes(b"new")
    (out / "a").write_bytes(b"old")
    stray = out / temp_name(b"a").decode()
    stray.write_bytes(b"half a cop")
    copier = FolderCopier()
    copier.copy(str(src), "a", str(out), "a")
    copier.release()
    assert (out / "a").read_bytes() == b"new"
    assert sorted(p.name for p in out.iterdir()) == ["a"]


def test_a_listing_skips_temporaries(cli, tmp_path) -> None:
    root, out = tmp_path / "listed", tmp_path / "out"
    root.mkdir()
    (root / "a").write_bytes(b"a")
    (root / temp_name(b"b").decode()).write_bytes(b"half a copy")
    proc = cli("run", "--from-listing", f"file://{root}", "--operation", "copy", "--target",
               f"file://{out}", "--json", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert _files(out) == ["a"]


# -- owner-only job files ----------------------------------------------------------------


def test_a_generated_manifest_is_readable_by_its_owner_only(cli, tmp_path) -> None:
    root = tmp_path / "listed"
    root.mkdir()
    (root / "a").write_bytes(b"a")
    proc = cli("run", "--from-listing", f"file://{root}", "--operation", "copy", "--target",
               f"file://{tmp_path / 'out'}", "--json", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    job_dir = cli.home / "jobs" / job_id_of(proc.stdout)
    assert (job_dir / "manifest.csv").exists()
    for path in [job_dir, *job_dir.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode & 0o077 == 0, f"{path} is {oct(mode)}"
    umask = os.umask(0o022)
    os.umask(umask)  # (read back: the CLI ran with it)
    # The copies are user data: they keep the usual modes.
    assert stat.S_IMODE((tmp_path / "out" / "a").stat().st_mode) == 0o666 & ~umask


# -- the whole-chunk call ------------------------------------------------------------------


def _chunk(bucket: str, keys: list[str]) -> Chunk:
    return Chunk(0, 0, [bucket] * len(keys), keys, [None] * len(keys), keys)


def test_one_call_copies_a_chunk_and_reports_each_file(tmp_path) -> None:
    src, out = tmp_path / "src", tmp_path / "out"
    (src / "d" / "e").mkdir(parents=True)
    keys = [f"d/e/f{i}" for i in range(200)] + ["missing", "../up", "d", "d/e/f0"]
    for k in keys[:200]:
        (src / k).write_bytes(k.encode())
    op = CopyOperation({"TargetResource": f"file://{out}", "TargetKeyPrefix": "pre"},
                       Resolver(), "job")
    chunk = _chunk(f"file://{src}", keys)
    results = op.run_chunk_sync(chunk, list(range(len(keys))))
    assert results is not None and results[:200] == [None] * 200
    assert [r.error_code for r in results[200:203]] == ["NoSuchKey", "InvalidObjectKey",
                                                        "InvalidObjectKey"]
    assert results[203] is None
    assert [(out / "pre" / k).read_bytes() for k in keys[:200]] == [k.encode()
                                                                    for k in keys[:200]]
    assert op.run_chunk_sync(chunk, [5, 1]) == [None, None]  # a subset, in the given order
    op.make_durable()
    op.sync_chunk_done()
    assert op.folders._cache().size == 0
    # Not every row folder to folder: the loop runs the chunk task by task.
    remote = CopyOperation({"TargetResource": "s3://bucket"}, Resolver(), "job")
    assert remote.run_chunk_sync(chunk, [0]) is None


def test_one_call_copies_per_row_destinations_and_refuses_versions(tmp_path) -> None:
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    for k in ("a", "b", "c"):
        (src / k).write_bytes(k.encode())
    chunk = Chunk(0, 0, [f"file://{src}"] * 3, ["a", "b", "c"], [None, "v1", None],
                  ["a", "b", "c"], dest_buckets=[f"file://{out}/one", None, f"file://{out}/two"],
                  dest_keys=["x/a", None, "y"])
    op = CopyOperation({"TargetResource": f"file://{out}/default"}, Resolver(), "job")
    results = op.run_chunk_sync(chunk, [0, 1, 2])
    assert results is not None and results[0] is None and results[2] is None
    assert results[1].error_code == "InvalidRequest"  # a folder keeps no versions
    assert (out / "one" / "x" / "a").read_bytes() == b"a"
    assert (out / "two" / "y").read_bytes() == b"c"
    assert not (out / "default").exists()
    plain = Chunk(0, 0, [f"file://{src}"] * 2, ["a", "b"], [None, "v1"], ["a", "b"])
    results = op.run_chunk_sync(plain, [0, 1])
    assert results is not None and results[0] is None
    assert results[1].error_code == "InvalidRequest"
    assert (out / "default" / "a").read_bytes() == b"a"
    op.sync_chunk_done()


def test_a_chunk_over_more_folders_than_the_cache_holds(tmp_path) -> None:
    """The folder cache empties itself between files, never during one: 150 source and
    150 destination folders (CACHE_SIZE is 64) in one call, every copy lands."""
    from batchops._localfs import CACHE_SIZE

    src = tmp_path / "src"
    keys = [f"s{i:03d}/f" for i in range(150)]
    for k in keys:
        (src / k).parent.mkdir(parents=True)
        (src / k).write_bytes(k.encode())
    (tmp_path / "out").mkdir()
    cache = DirCache()
    total, failed = cache.copy_files(
        [os.fsencode(src), os.fsencode(tmp_path / "out")], [0] * 150,
        [k.encode() for k in keys], [1] * 150, [f"d{i:03d}/g".encode() for i in range(150)])
    assert failed == [] and total == sum(len(k) for k in keys)
    assert 0 < cache.size <= CACHE_SIZE
    assert [(tmp_path / "out" / f"d{i:03d}" / "g").read_bytes() for i in range(150)] == [
        k.encode() for k in keys]
    cache.release()
    assert cache.size == 0


def test_indices_from_python_are_checked_before_the_native_loop(tmp_path) -> None:
    cache = DirCache()
    root = os.fsencode(tmp_path)
    for bad in ([5], [-1], [2**40]):
        with pytest.raises((IndexError, OverflowError)):
            cache.copy_files([root], bad, [b"a"], [0], [b"b"])
    with pytest.raises(ValueError):
        cache.copy_files([root], [0, 0], [b"a"], [0], [b"b"])
    with pytest.raises(TypeError):
        cache.copy_files([root], [0], ["a"], [0], [b"b"])
    with pytest.raises(ValueError):
        cache.copy_files([root + b"\0x"], [0], [b"a"], [0], [b"b"])
    total, failed = cache.copy_files([root], [0], [b"a\0b"], [0], [b"b"])  # NUL inside a key
    assert total == 0 and failed == [(0, 22, 4)]


def test_keys_are_refused_by_the_same_rules_as_before(tmp_path) -> None:
    from batchops.storage.localfs import FolderCopier

    (tmp_path / "src").mkdir()
    copier = FolderCopier()
    for key in ("", "/", "a//b", "./a", "a/.", "a/../b", ".."):
        with pytest.raises(TaskError) as err:
            copier.copy(str(tmp_path / "src"), key, str(tmp_path / "out"), "x")
        assert err.value.error_code == "InvalidObjectKey", key
    copier.release()


# -- durability ----------------------------------------------------------------------------


@pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace")
def test_a_chunks_copies_are_synced_before_its_marker(cli, tmp_path) -> None:
    """The system calls of a real run, traced: each chunk's marker is linked into place
    (created exclusively: first writer wins) only after a syncfs that follows the last
    copy the chunk put in place (an unnamed file linked at its name, or a temporary
    renamed)."""
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    keys = [f"f{i:02d}" for i in range(30)]
    for k in keys:
        (src / k).write_bytes(k.encode())
    m = write_manifest(tmp_path / "m.csv", [(f"file://{src}", k) for k in keys])
    trace = tmp_path / "trace"
    proc = subprocess.run(
        ["strace", "-f", "-qq", "-e", "trace=syncfs,rename,renameat,renameat2,link,linkat",
         "-o",
         str(trace), sys.executable, "-m", "batchops", "run", "--manifest", str(m),
         "--operation", "copy", "--target", f"file://{out}", "--chunk-size", "10",
         "--workers", "1", "--json", "--no-progress"],
        capture_output=True, text=True, env=cli.env(), timeout=300)
    assert proc.returncode == 0, proc.stderr
    # Chunks of ten files: f00-f09 are chunk 0, and so on. A chunk's data is durable once
    # a syncfs that *started* after its last copy has *returned*; its marker must come
    # after such a syncfs (the next chunk's copies may run meanwhile: the sync and the
    # report of one chunk overlap the tasks of the next).
    last_copy: dict[int, int] = {}
    marker_at: dict[int, int] = {}
    syncs: list[tuple[int, int]] = []  # (line it started, line it returned)
    open_sync: dict[str, int] = {}  # pid -> line of a syncfs not yet returned
    open_link: dict[str, int] = {}  # pid -> chunk of a marker's link not yet returned
    for n, line in enumerate(trace.read_text().splitlines()):
        pid = line.split(None, 1)[0]
        if "syncfs(" in line:
            if line.rstrip().endswith("= 0"):
                syncs.append((n, n))
            elif "<unfinished" in line:
                open_sync[pid] = n
        elif "syncfs resumed" in line and line.rstrip().endswith("= 0") and pid in open_sync:
            syncs.append((open_sync.pop(pid), n))
        elif ("renameat" in line and ".batchops-" in line) or \
                ("linkat(" in line and "AT_EMPTY_PATH" in line and line.rstrip().endswith("= 0")):
            name = line.rsplit('"', 2)[-2].rsplit("/", 1)[-1]
            last_copy[int(name[1:]) // 10] = n
        elif "link(" in line and "/chunks/" in line and ".tmp" in line:
            chunk = int(line.rsplit('"', 2)[-2].rsplit("/", 1)[-1][:12])
            if line.rstrip().endswith("= 0"):
                marker_at[chunk] = n
            elif "<unfinished" in line:
                open_link[pid] = chunk
        elif "link resumed" in line and line.rstrip().endswith("= 0") and pid in open_link:
            marker_at[open_link.pop(pid)] = n
    assert sorted(marker_at) == [0, 1, 2] and sorted(last_copy) == [0, 1, 2], trace.read_text()
    for chunk, at in marker_at.items():
        assert any(last_copy[chunk] < s0 and e0 < at for s0, e0 in syncs), \
            f"chunk {chunk}'s marker is not after a syncfs that followed its last copy"


# -- other stores to and from a folder -----------------------------------------------------


def test_s3_to_a_folder_obeys_the_sandbox_and_takes_long_names(cli, s3, bucket,
                                                                 tmp_path) -> None:
    out, outside = tmp_path / "out", tmp_path / "outside"
    out.mkdir()
    outside.mkdir()
    os.symlink(outside, out / "sub")
    long_name = "L" * 255
    keys = [long_name, "sub/x", "plain"]
    for k in keys:
        s3.put_object(Bucket=bucket, Key=k, Body=k.encode())
    m = write_manifest(tmp_path / "m.csv", [(bucket, k) for k in keys])
    proc = cli("run", "--manifest", str(m), "--operation", "copy", "--target", f"file://{out}",
               "--json", "--no-progress")
    assert proc.returncode == 1, proc.stderr
    rows = _rows_by_key(cli, proc)
    assert rows["sub/x"][3:6] == ["failed", "403", "AccessDenied"]
    assert rows[long_name][3] == rows["plain"][3] == "succeeded"
    assert (out / long_name).read_bytes() == long_name.encode()
    assert list(outside.iterdir()) == []
    assert sorted(p.name for p in out.iterdir()) == sorted([long_name, "plain", "sub"])


def test_a_folder_to_s3_does_not_read_through_a_symlink(cli, s3, bucket, tmp_path) -> None:
    src, secret = tmp_path / "src", tmp_path / "secret"
    src.mkdir()
    secret.mkdir()
    (secret / "key").write_bytes(b"private")
    (src / "mine").write_bytes(b"mine")
    os.symlink(secret, src / "dir")
    m = write_manifest(tmp_path / "m.csv", [(f"file://{src}", "dir/key"),
                                            (f"file://{src}", "mine")])
    proc = cli("run", "--manifest", str(m), "--operation", "copy", "--target",
               f"s3://{bucket}/up", "--json", "--no-progress")
    assert proc.returncode == 1, proc.stderr
    rows = _rows_by_key(cli, proc)
    assert rows["dir/key"][3:6] == ["failed", "403", "AccessDenied"]
    listed = s3.list_objects_v2(Bucket=bucket, Prefix="up/").get("Contents", [])
    assert [o["Key"] for o in listed] == ["up/mine"]
    assert s3.get_object(Bucket=bucket, Key="up/mine")["Body"].read() == b"mine"
