"""How a source object and its copy are compared: the modes, what can differ, and the
rule on metadata alone (no I/O; operations/compare.py fetches the metadata and reads
contents where a checksum must be computed; a listing diff applies the same rule).

Modes, and how far each can be trusted:
- `size`: same size. A heuristic: an object rewritten at the same size looks unchanged.
- `size+mtime`: same size, and the target is not older than the source (whole seconds:
  S3 keeps modification times to the second). A heuristic, as rsync's and rclone's are.
- `etag`: same size and the same ETag. Exact only where both ETags are the MD5 of the
  bytes (single-part uploads, no SSE-KMS): a multipart ETag (`<md5 of md5s>-<parts>`)
  depends on the part size, and a local file or another store has no MD5 ETag; there
  the sizes alone decide.
- `checksum`: same size and the same checksum of the bytes: the stored S3 checksums
  (`x-amz-checksum-*`, FULL_OBJECT) where both sides have the same algorithm, else one
  computed from the bytes (both sides, or only the side that has none stored). Exact.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from batchops.model.errors import SpecError

#: The checksum computed where the two sides have no stored one in common: S3's
#: default for new objects, so a stored value on one side often saves reading it.
DEFAULT_CHECKSUM = "CRC64NVME"

MODE_HELP = ("size (heuristic), size+mtime (heuristic: same size and the target not "
             "older), etag (exact for single-part objects; multipart ETags are not MD5s, "
             "and there the sizes decide), checksum (exact: stored x-amz-checksum-* "
             "where both sides have one, else computed from the bytes)")


class CompareMode(StrEnum):
    """What makes a target object the same as its source."""

    SIZE = "size"
    SIZE_MTIME = "size+mtime"
    ETAG = "etag"
    CHECKSUM = "checksum"

    @classmethod
    def parse(cls, value: str, where: str = "--compare") -> CompareMode:
        try:
            return cls(value)
        except ValueError:
            raise SpecError(f"{where} must be one of {' | '.join(m.value for m in cls)}, "
                            f"not {value!r}") from None

    @property
    def exact(self) -> bool:
        """Whether equal means equal bytes (etag: only for single-part objects)."""
        return self is CompareMode.CHECKSUM


class Difference(StrEnum):
    """The property that differed, named as the report's error code."""

    TARGET_MISSING = "TargetMissing"
    SIZE = "SizeMismatch"
    MTIME = "TargetOlder"
    ETAG = "ETagMismatch"
    CHECKSUM = "ChecksumMismatch"

    @property
    def http_status(self) -> int:
        return 404 if self is Difference.TARGET_MISSING else 412

    def describe(self, src: ObjectInfo | None = None, dst: ObjectInfo | None = None) -> str:
        """One sentence for the report's result message."""
        if self is Difference.TARGET_MISSING or src is None or dst is None:
            return "the target object does not exist"
        if self is Difference.SIZE:
            return f"the target is {dst.size} bytes, the source {src.size}"
        if self is Difference.MTIME:
            return "the target was last modified before the source"
        if self is Difference.ETAG:
            return f"the target's ETag is {dst.etag}, the source's {src.etag}"
        return "the target's checksum differs from the source's"


def _is_md5(etag: str | None) -> bool:
    return etag is not None and len(etag) == 32 and all(c in "0123456789abcdef"
                                                        for c in etag.lower())


def _md5_of(etag: str | None) -> str | None:
    return etag.lower() if etag and _is_md5(etag) else None


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """What a HEAD (or a stat) tells of one object."""

    size: int
    mtime: float  # seconds since the epoch
    etag: str | None = None  # without quotes; None where the store keeps none
    #: Stored FULL_OBJECT checksums: (algorithm, base64 value), e.g. ("CRC32", "...").
    checksums: tuple[tuple[str, str], ...] = ()

    @property
    def md5_etag(self) -> str | None:
        """The ETag when it is the MD5 of the bytes (a single-part upload), else None."""
        return _md5_of(self.etag)

    def checksum(self, algorithm: str) -> str | None:
        return next((v for a, v in self.checksums if a == algorithm), None)


def metadata_difference(mode: CompareMode, src: ObjectInfo,
                        dst: ObjectInfo | None) -> Difference | None:
    """The first property that differs, as far as metadata tells (None: no difference
    seen). In `checksum` mode, when the two have no stored checksum in common, None
    means "read the bytes" (see `checksum_plan`)."""
    if dst is None:
        return Difference.TARGET_MISSING
    found = listed_difference(mode, src.size, src.mtime, src.etag,
                              dst.size, dst.mtime, dst.etag)
    if found is None and mode is CompareMode.CHECKSUM:
        shared = _shared_checksum(src, dst)
        if shared is not None and src.checksum(shared) != dst.checksum(shared):
            return Difference.CHECKSUM
    return found


def listed_difference(mode: CompareMode, size: int, mtime: float, etag: str | None,
                      dst_size: int, dst_mtime: float,
                      dst_etag: str | None) -> Difference | None:
    """`metadata_difference` of two objects known by what a listing tells (size, mtime
    in seconds, ETag; no stored checksums), without making ObjectInfos."""
    return listed_rule(mode)(size, mtime, etag, dst_size, dst_mtime, dst_etag)


ListedRule = Callable[[int, float, "str | None", int, float, "str | None"], "Difference | None"]


def _by_size(size: int, mtime: float, etag: str | None, dst_size: int, dst_mtime: float,
             dst_etag: str | None) -> Difference | None:
    return Difference.SIZE if size != dst_size else None


def _by_size_mtime(size: int, mtime: float, etag: str | None, dst_size: int,
                   dst_mtime: float, dst_etag: str | None) -> Difference | None:
    if size != dst_size:
        return Difference.SIZE
    return Difference.MTIME if int(dst_mtime) < int(mtime) else None


def _by_etag(size: int, mtime: float, etag: str | None, dst_size: int, dst_mtime: float,
             dst_etag: str | None) -> Difference | None:
    if size != dst_size:
        return Difference.SIZE
    a, b = _md5_of(etag), _md5_of(dst_etag)
    return Difference.ETAG if a is not None and b is not None and a != b else None


def listed_rule(mode: CompareMode) -> ListedRule:
    """`listed_difference` for one mode, as a function of (size, mtime, etag, dst_size,
    dst_mtime, dst_etag): a listing diff judges every pair of its listings by it (the
    mode is looked at once, not at every pair). In checksum mode the sizes decide here;
    the rest is the stored checksums' or the bytes'."""
    if mode is CompareMode.SIZE_MTIME:
        return _by_size_mtime
    return _by_etag if mode is CompareMode.ETAG else _by_size


def _shared_checksum(src: ObjectInfo, dst: ObjectInfo) -> str | None:
    theirs = {a for a, _ in dst.checksums}
    return next((a for a, _ in src.checksums if a in theirs), None)


def checksum_plan(src: ObjectInfo, dst: ObjectInfo) -> tuple[str, bool, bool] | None:
    """In `checksum` mode, once the metadata agree: None when stored checksums decided,
    else (algorithm, compute on the source?, compute on the target?), an algorithm one
    side has stored being preferred so that only the other side is read."""
    if _shared_checksum(src, dst) is not None:
        return None
    if src.checksums:
        return src.checksums[0][0], False, True
    if dst.checksums:
        return dst.checksums[0][0], True, False
    return DEFAULT_CHECKSUM, True, True


__all__ = ["CompareMode", "Difference", "ObjectInfo", "metadata_difference",
           "checksum_plan", "MODE_HELP", "DEFAULT_CHECKSUM"]
