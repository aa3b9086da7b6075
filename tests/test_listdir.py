"""The native folder lister (ext/batchops/_listdir.pyx) and the walk built on it
(manifest/listing.py `_list_folder`): sizes and times as os.stat gives them, bounded
batches, and the sandbox (no symlink followed below the root)."""

from __future__ import annotations

import errno
import os
from functools import partial
from pathlib import Path

import pytest

from batchops._listdir import Scanner, Walker
from batchops.manifest.listing import _list_folder


def _tree(root: Path) -> None:
    (root / "a" / "b").mkdir(parents=True)
    (root / "a" / "one").write_bytes(b"1")
    (root / "a" / "b" / "two").write_bytes(b"22")
    (root / "top").write_bytes(b"333")
    os.mkfifo(root / "fifo")
    outside = root.parent / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"x")
    (root / "link-dir").symlink_to(outside)
    (root / "link-file").symlink_to(outside / "secret")


def test_scanner_gives_regular_files_and_folders_with_stat_s_figures(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    _tree(root)
    entries = {}
    scanner = Scanner(os.fsencode(root))
    while batch := scanner.batch(2):
        assert len(batch) <= 2
        entries.update({name: (is_dir, size, ns) for name, is_dir, size, ns in batch})
    assert set(entries) == {b"a", b"top"}  # no FIFO, no symlink
    st = os.stat(root / "top")
    assert entries[b"top"] == (False, 3, st.st_mtime_ns)
    assert entries[b"a"][0] is True
    assert scanner.batch() == []


def test_scanner_refuses_a_symlinked_folder_unless_it_is_the_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    _tree(root)
    with pytest.raises(OSError) as info:
        Scanner(os.fsencode(root / "link-dir"))
    assert info.value.errno in (errno.ELOOP, errno.ENOTDIR)
    names = [e[0] for e in Scanner(os.fsencode(root / "link-dir"), follow=True).batch()]
    assert names == [b"secret"]
    with pytest.raises(FileNotFoundError):
        Scanner(os.fsencode(root / "missing"))


def test_the_walk_lists_every_file_once_and_never_leaves_the_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    _tree(root)
    for i in range(2500):  # more than one batch in a folder
        (root / "a" / f"f{i:04d}").write_bytes(b"")
    rows = list(_list_folder(str(root), ""))
    keys = [r[0] for r in rows]
    assert len(keys) == len(set(keys)) == 2503
    assert {"a/one", "a/b/two", "top"} <= set(keys)
    assert not any(k.startswith("link") or k == "fifo" for k in keys)
    top = next(r for r in rows if r[0] == "top")
    assert top[1] == 3 and top[2].timestamp() == pytest.approx(os.stat(root / "top").st_mtime)
    assert [r[0] for r in _list_folder(str(root), "a/b")] == ["a/b/two"]


def test_the_walker_makes_keys_as_fsdecode_and_batches_across_folders(
        tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "sub" / "deeper").mkdir(parents=True)
    names = [b"plain", "\u00fc.txt".encode(), b"caf\xe9"]  # the last is not UTF-8
    for folder in (b"", b"sub/", b"sub/deeper/"):
        for name in names:
            with open(os.path.join(os.fsencode(root), folder + name), "wb") as f:
                f.write(name)
    walker = Walker(os.fsencode(root))
    rows = []
    while batch := walker.batch(4):
        assert len(batch) <= 4
        rows += batch
    assert walker.batch() == []
    want = {os.fsdecode(folder + name): (len(name), os.stat(
        os.path.join(os.fsencode(root), folder + name)).st_mtime_ns)
        for folder in (b"", b"sub/", b"sub/deeper/") for name in names}
    assert len(rows) == len(want) and {k: (s, t) for k, s, t in rows} == want


def test_the_walker_enters_only_folders_that_can_hold_the_prefix(tmp_path: Path) -> None:
    root = tmp_path / "root"
    for key in ("a/b/one", "a/bc/two", "a/c/three", "ab", "b/four"):
        (root / key).parent.mkdir(parents=True, exist_ok=True)
        (root / key).write_bytes(b"")
    for prefix, keys in (("a/b", ["a/b/one", "a/bc/two"]), ("a/b/", ["a/b/one"]),
                         ("a", ["a/b/one", "a/bc/two", "a/c/three", "ab"]), ("zz", []),
                         ("", ["a/b/one", "a/bc/two", "a/c/three", "ab", "b/four"])):
        walker = Walker(os.fsencode(root), prefix.encode())
        got = [k for batch in iter(partial(walker.batch, 2), []) for k, _, _ in batch]
        assert sorted(got) == keys, prefix
    assert Walker(os.fsencode(tmp_path / "missing")).batch() == []


def test_the_walk_skips_batchops_temporaries_only(tmp_path: Path) -> None:
    from batchops.storage.localfs import TEMP_PREFIX, TEMPORARY_NAME_LENGTH

    root = tmp_path / "root"
    (root / "a").mkdir(parents=True)
    temporary = TEMP_PREFIX + "x" * (TEMPORARY_NAME_LENGTH - len(TEMP_PREFIX) - 4) + ".tmp"
    alike = "y" * (TEMPORARY_NAME_LENGTH - 4) + ".tmp"  # of a temporary's length, not one
    for name in (temporary, alike, "kept"):
        (root / name).write_bytes(b"")
        (root / "a" / name).write_bytes(b"")
    keys = sorted(r[0] for r in _list_folder(str(root), ""))
    assert keys == sorted([alike, "kept", f"a/{alike}", "a/kept"])
