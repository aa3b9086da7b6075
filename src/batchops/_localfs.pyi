"""Type stub for the compiled folder-copy core (ext/batchops/_localfs.pyx)."""

STEPS: tuple[str, ...]

def copy_at(src_dir: int, src_name: bytes, dst_dir: int, tmp_name: bytes,
            dst_name: bytes) -> int: ...
