"""`invoke` (Amazon's `LambdaInvoke`, run anywhere): call a function for each object.

`FunctionArn` is one of:
- `python:package.module:function` — imported once per worker; sync functions run in a
  thread, async ones on the worker's loop; called with the payload as a dict;
- `command:["/path/prog", "arg", ...]` — an argv list run without a shell, with the
  payload as JSON on stdin and the response as JSON on stdout;
- `arn:aws:lambda:...` — a real Lambda function, called through the AWS client.

Payload and response follow Amazon's invocation schema 2.0 (1.0 when
`InvocationSchemaVersion` says so): resultCode `Succeeded` → succeeded,
`TemporaryFailure` → retried, `PermanentFailure` → failed; `resultString` goes to the
report's ResultMessage. `UserArguments` reach the function (schema 2.0).
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import orjson

from batchops.model.arns import lambda_region, s3_url_to_arn
from batchops.model.chunk import Chunk
from batchops.model.errors import SpecError
from batchops.operations.base import Operation
from batchops.storage.locations import Resolver
from batchops.storage.outcomes import TaskError

_WHERE = "Operation.LambdaInvoke"


def _parse_target(target: Any) -> tuple[str, Any]:
    if not isinstance(target, str) or not target:
        raise SpecError(f"{_WHERE}.FunctionArn is required: python:pkg.mod:function, "
                        'command:["prog", "arg"] or a Lambda function ARN')
    if target.startswith("python:"):
        parts = target[len("python:"):].split(":")
        if len(parts) != 2 or not all(parts):
            raise SpecError(f"{_WHERE}.FunctionArn {target!r}: expected "
                            "python:package.module:function")
        return "python", tuple(parts)
    if target.startswith("command:"):
        try:
            argv = orjson.loads(target[len("command:"):])
        except orjson.JSONDecodeError:
            argv = None
        if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
            raise SpecError(f"{_WHERE}.FunctionArn {target!r}: expected command: followed by a "
                            'JSON list of strings, e.g. command:["./handler", "--flag"]')
        return "command", argv
    if target.startswith("arn:"):
        lambda_region(target, f"{_WHERE}.FunctionArn")
        return "lambda", target
    raise SpecError(f"{_WHERE}.FunctionArn {target!r}: expected python:pkg.mod:function, "
                    'command:["prog", ...] or arn:aws:lambda:...')


#: Where a python: function is imported from: the folder `batchops` ran in, as `python -m`
#: does. Ours, not Amazon's: kept out of the job's Amazon-shaped Operation.
_IMPORT_PATH = "BatchopsImportPath"


def _import(module: str, folder: str) -> Any:
    """Import `module` as if from `folder` (the user's current folder). The folder goes
    last on sys.path: a `copy.py` there never shadows a module batchops imports."""
    if folder not in sys.path:
        sys.path.append(folder)
    return importlib.import_module(module)


class InvokeOperation(Operation):
    amazon_name = "LambdaInvoke"
    alias = "invoke"
    verb = "invoke functions on"

    @classmethod
    def preflight(cls, params: Mapping[str, Any], resolver: Resolver) -> None:
        """A Lambda function that is not there (or not callable with these credentials)
        is one sentence before any task runs."""
        arn = str(params["FunctionArn"])
        if _parse_target(arn)[0] == "lambda":
            resolver.context(None).check_function(arn, lambda_region(arn, "FunctionArn"))

    @classmethod
    def validate(cls, params: Mapping[str, Any], resolver: Resolver) -> dict[str, Any]:
        kind, spec = _parse_target(params.get("FunctionArn"))
        where = params.get(_IMPORT_PATH) or os.getcwd()
        if kind == "python":
            module, name = spec
            try:
                fn = getattr(_import(module, where), name)
            except (ImportError, AttributeError) as exc:
                raise SpecError(f"{_WHERE}.FunctionArn: cannot import {module}:{name} "
                                f"({exc})") from None
            if not callable(fn):
                raise SpecError(f"{_WHERE}.FunctionArn: {module}:{name} is not callable")
        elif kind == "command":
            import shutil

            if shutil.which(spec[0]) is None:
                raise SpecError(f"{_WHERE}.FunctionArn: command {spec[0]!r} is not an "
                                "executable file (nor one on PATH)")
        version = str(params.get("InvocationSchemaVersion", "2.0"))
        if version not in ("1.0", "2.0"):
            raise SpecError(f"{_WHERE}.InvocationSchemaVersion must be 1.0 or 2.0")
        args = params.get("UserArguments") or {}
        if not isinstance(args, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                 for k, v in args.items()):
            raise SpecError(f"{_WHERE}.UserArguments must map strings to strings")
        if args and version == "1.0":
            raise SpecError(f"{_WHERE}.UserArguments need InvocationSchemaVersion 2.0")
        out: dict[str, Any] = {"FunctionArn": params["FunctionArn"],
                               "InvocationSchemaVersion": version}
        if kind == "python":
            out[_IMPORT_PATH] = where  # workers import from here too (not a secret)
        if args:
            out["UserArguments"] = args
        return out

    @classmethod
    def amazon_spec(cls, params: Mapping[str, Any], partition: str = "aws") -> dict[str, Any]:
        return {cls.amazon_name: {k: v for k, v in params.items() if k != _IMPORT_PATH}}

    def __init__(self, params: Mapping[str, Any], resolver: Resolver, job_id: str = "") -> None:
        super().__init__(params, resolver, job_id)
        self._kind, spec = _parse_target(params["FunctionArn"])
        self._version = params["InvocationSchemaVersion"]
        self._job_id = job_id or str(uuid.uuid4())
        self._fn: Callable[..., Any] | None = None
        self._argv: list[str] = []
        if self._kind == "python":
            module, name = spec
            self._fn = getattr(_import(module, params.get(_IMPORT_PATH) or os.getcwd()), name)
        elif self._kind == "command":
            self._argv = spec

    def payload(self, chunk: Chunk, i: int) -> dict[str, Any]:
        task: dict[str, Any] = {"taskId": f"{chunk.index}-{i}", "s3Key": chunk.report_keys[i],
                                "s3VersionId": chunk.versions[i]}
        loc = self.resolver.location(chunk.buckets[i])
        bucket = loc.root.split("://", 1)[1] if loc.scheme == "s3" else loc.root
        job: dict[str, Any] = {"id": self._job_id}
        if self._version == "2.0":
            task["s3Bucket"] = bucket
            job["userArguments"] = self.params.get("UserArguments") or {}
        else:
            task["s3BucketArn"] = s3_url_to_arn(
                f"s3://{bucket}", self.resolver.context(loc).partition) \
                if loc.scheme == "s3" else bucket
        return {"invocationSchemaVersion": self._version, "invocationId": str(uuid.uuid4()),
                "job": job, "tasks": [task]}

    async def _call(self, payload: dict[str, Any]) -> Any:
        import asyncio

        if self._kind == "python":
            assert self._fn is not None
            try:
                if inspect.iscoroutinefunction(self._fn):
                    return await self._fn(payload)
                return await asyncio.to_thread(self._fn, payload)
            except Exception as exc:  # noqa: BLE001 - the user's function failed, not us:
                # the task fails, as a Lambda function's unhandled error does.
                raise TaskError(500, "Unhandled", f"{type(exc).__name__}: {exc}"[:300]) \
                    from None
        if self._kind == "command":
            proc = await asyncio.create_subprocess_exec(
                *self._argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE)
            out, err = await proc.communicate(orjson.dumps(payload))
            if proc.returncode != 0:
                detail = err.decode(errors="replace").strip().splitlines()
                raise TaskError(500, "CommandFailed",
                                f"{self._argv[0]} exited {proc.returncode}"
                                + (f": {detail[-1][:200]}" if detail else ""))
            try:
                return orjson.loads(out)
            except orjson.JSONDecodeError:
                raise TaskError(500, "InvalidResponse",
                                f"{self._argv[0]} did not print a JSON response") from None
        arn = self.params["FunctionArn"]
        client = await self.resolver.s3api(None).lambda_client(lambda_region(arn, "FunctionArn"))
        response = await client.invoke(FunctionName=self.params["FunctionArn"],
                                       InvocationType="RequestResponse",
                                       Payload=orjson.dumps(payload))
        body = await response["Payload"].read()
        if response.get("FunctionError"):
            raise TaskError(500, "Lambda.Unhandled", body.decode(errors="replace")[:300])
        return orjson.loads(body)

    async def run(self, chunk: Chunk, i: int) -> str | None:
        payload = self.payload(chunk, i)
        response = await self._call(payload)
        results = response.get("results") if isinstance(response, dict) else None
        if not isinstance(results, list) or not results or not isinstance(results[0], dict):
            raise TaskError(500, "InvalidResponse",
                            "the function's response has no results[0] (invocation schema "
                            f"{self._version})")
        result = results[0]
        code = result.get("resultCode")
        message = str(result.get("resultString") or "")
        if code == "Succeeded":
            return message or None
        if code == "TemporaryFailure":
            raise TaskError(500, "TemporaryFailure", message or "TemporaryFailure",
                            retryable=True)
        if code == "PermanentFailure":
            raise TaskError(400, "PermanentFailure", message or "PermanentFailure")
        raise TaskError(500, "InvalidResponse", f"unknown resultCode {code!r}")
