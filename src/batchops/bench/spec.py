"""What `batchops bench` is asked to measure, parsed and checked once (no I/O)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from batchops.model.errors import SpecError
from batchops.model.spec import AwsSettings

#: Workloads and the operations each performs (mixed: by --mix).
WORKLOADS = ("put", "get", "stat", "delete", "list", "copy", "mixed", "multipart", "tagging",
             "restore", "checksum")
#: Workloads that read objects made before the measured run (the preparation).
READS_OBJECTS = frozenset({"get", "stat", "delete", "list", "copy", "mixed", "tagging",
                           "restore", "checksum"})
#: Workloads that run a Batch Operations operation's own code, and that operation.
JOB_OPERATIONS = MappingProxyType({"copy": "copy", "tagging": "put-tagging",
                                   "restore": "restore", "checksum": "compute-checksum"})
MIX_OPERATIONS = ("get", "stat", "put", "delete")
DEFAULT_MIX = MappingProxyType({"get": 45.0, "stat": 30.0, "put": 15.0, "delete": 10.0})

_UNITS = MappingProxyType({"": 1, "b": 1, "kb": 1000, "kib": 1024, "mb": 1000**2,
                           "mib": 1024**2, "gb": 1000**3, "gib": 1024**3})


def parse_size(text: str, flag: str) -> int:
    """`4KiB`, `1MiB`, `512`, `1.5MB` → bytes."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", text)
    unit = m.group(2).lower() if m else ""
    if not m or unit not in _UNITS:
        raise SpecError(f"{flag} {text!r}: expected a size such as 4KiB, 1MiB or 512")
    return int(float(m.group(1)) * _UNITS[unit])


def parse_duration(text: str, flag: str) -> float:
    """`60s`, `5m`, `1h`, `90` (seconds) → seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*", text)
    if not m:
        raise SpecError(f"{flag} {text!r}: expected a duration such as 30s, 5m or 1h")
    scale = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 1}[m.group(2)]
    return float(m.group(1)) * scale


def parse_mix(text: str) -> dict[str, float]:
    """`get=45,stat=30,put=15,delete=10` → weights."""
    out: dict[str, float] = {}
    for part in text.split(","):
        name, sep, weight = part.partition("=")
        name = name.strip()
        if not sep or name not in MIX_OPERATIONS:
            raise SpecError(f"--mix {text!r}: expected OP=WEIGHT,... with OP one of "
                            f"{', '.join(MIX_OPERATIONS)}")
        try:
            out[name] = float(weight)
        except ValueError:
            raise SpecError(f"--mix {text!r}: {weight!r} is not a number") from None
        if out[name] < 0:
            raise SpecError(f"--mix {text!r}: weights cannot be negative")
    if not sum(out.values()):
        raise SpecError(f"--mix {text!r}: the weights add up to 0")
    return out


@dataclass(frozen=True)
class BenchSpec:
    """One benchmark run. Sizes: `sizes` (one, or a list picked in turn) or a random
    range `size_range` (low, high)."""

    url: str
    workload: str
    sizes: tuple[int, ...] = (4096,)
    size_range: tuple[int, int] | None = None
    objects: int = 1000
    concurrency: int = 16
    workers: int = 1
    duration: float = 10.0
    count: int = 0  # 0: run for `duration`
    warmup: float = 0.0
    autoterm: bool = False
    autoterm_segments: int = 7  # as warp's --autoterm.dur, in one-second segments
    autoterm_tolerance: float = 0.075  # as warp's --autoterm.pct, as a fraction
    mix: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_MIX))
    prefix: str = ""
    keep: bool = False
    part_size: int = 5 * 1024**2  # multipart
    retries: int = 0  # retries of a retryable failure (counted apart); 0: none
    #: --profile, --region, --endpoint-url (names only, never keys: the spec goes to the
    #: workers as JSON and into the results)
    aws: AwsSettings = AwsSettings()

    def check(self) -> None:
        if self.workload not in WORKLOADS:
            raise SpecError(f"--workload {self.workload!r}: choose one of "
                            f"{', '.join(WORKLOADS)}")
        if self.concurrency < 1 or self.workers < 1:
            raise SpecError("--concurrency and --workers must be at least 1")
        if self.objects < 1:
            raise SpecError("--objects must be at least 1")
        if self.count < 0 or (not self.count and self.duration <= 0):
            raise SpecError("--duration must be above 0 (or give --count N)")
        if self.retries < 0:
            raise SpecError("--retries cannot be negative")
        if self.autoterm_segments < 2:
            raise SpecError("--autoterm-segments must be at least 2")
        if not 0 < self.autoterm_tolerance < 1:
            raise SpecError("--autoterm-pct must be above 0 and below 100")
        if self.warmup < 0:
            raise SpecError("--warmup cannot be negative")
        if self.size_range and not 0 < self.size_range[0] <= self.size_range[1]:
            raise SpecError("--size-random LOW..HIGH needs 0 < LOW <= HIGH")
        if any(s < 0 for s in self.sizes):
            raise SpecError("--size cannot be negative")
        if self.workload in ("tagging", "restore") and \
                not self.url.startswith(("s3://", "s3a://")):
            raise SpecError(f"--workload {self.workload} needs an S3 store (s3://bucket); "
                            f"{self.url.split('://', 1)[0]}:// has no {self.workload}")
        if self.workload == "multipart" and self.max_size() < self.part_size:
            raise SpecError(f"--workload multipart needs --size of at least "
                            f"{self.part_size // 1024**2} MiB (one part)")

    def max_size(self) -> int:
        return self.size_range[1] if self.size_range else max(self.sizes)

    def to_json(self) -> dict[str, Any]:
        return {"url": self.url, "workload": self.workload, "sizes": list(self.sizes),
                "size_range": list(self.size_range) if self.size_range else None,
                "objects": self.objects, "concurrency": self.concurrency,
                "workers": self.workers, "duration": self.duration, "count": self.count,
                "warmup": self.warmup, "autoterm": self.autoterm,
                "autoterm_segments": self.autoterm_segments,
                "autoterm_tolerance": self.autoterm_tolerance, "mix": dict(self.mix),
                "prefix": self.prefix, "keep": self.keep, "part_size": self.part_size,
                "retries": self.retries, "aws": self.aws.to_json()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BenchSpec:
        values = dict(data)
        values["sizes"] = tuple(values.get("sizes") or (4096,))
        values["size_range"] = tuple(values["size_range"]) if values.get("size_range") else None
        values["aws"] = AwsSettings.from_json(values.get("aws"))
        return cls(**values)
