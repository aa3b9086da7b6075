"""The `batchops` command line's arguments: every command, flag and help text.

The commands themselves are in cli.py.
"""

from __future__ import annotations

import argparse
import textwrap
from typing import Any

from batchops.model.compare import MODE_HELP

OPERATION_HELP = (
    "copy (S3PutObjectCopy), put-tagging (S3PutObjectTagging), delete-tagging "
    "(S3DeleteObjectTagging), put-acl (S3PutObjectAcl), restore (S3InitiateRestoreObject), "
    "put-retention (S3PutObjectRetention), put-legal-hold (S3PutObjectLegalHold), invoke "
    "(LambdaInvoke), replicate (S3ReplicateObject), compute-checksum "
    "(S3ComputeObjectChecksum), update-encryption (S3UpdateObjectEncryption), delete (ours), "
    "verify (ours: compare each object with its copy at --target), noop (benchmark the runner)"
)

EPILOG = """\
exit codes:
  0    the job completed and every task succeeded
  1    the job completed and some tasks failed (see the report)
  2    bad input (manifest, spec, flag, credential); nothing ran
  3    the job failed or cannot go on (failure threshold, a Failed job resumed,
       store unwritable or full, job already running)
  4    the job was cancelled (its report lists the tasks that ran)
  130  interrupted (Ctrl-C, SIGTERM); `batchops resume JOB_ID` continues

environment:
  BATCHOPS_HOME       job store folder (default ~/.batchops)
  BATCHOPS_LEASE_SECONDS  seconds of silence before a worker's chunks are taken back
                      (default 30)
  AWS_PROFILE, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN,
  AWS_REGION, AWS_DEFAULT_REGION, AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL,
  AWS_CONFIG_FILE, AWS_SHARED_CREDENTIALS_FILE
                      AWS settings, resolved by botocore as aws-cli does (profiles,
                      SSO, credential_process, assume-role, web identity, container and
                      instance metadata, `services` sections)

S3 settings per bucket:
  --bucket-map NAME=s3://BUCKET?profile=P&region=R&endpoint_url=URL gives one bucket its
  own profile, region or endpoint (names only: keys go in ~/.aws/credentials or a
  profile's credential_process, never in a URL, since job.json keeps the URL)
"""


def _add_aws_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("AWS settings (as aws-cli's; for every S3 bucket that has "
                             "none of its own in --bucket-map)")
    g.add_argument("--profile", metavar="NAME",
                   help="a profile of ~/.aws/config and ~/.aws/credentials (default: "
                        "AWS_PROFILE, else the default profile)")
    g.add_argument("--region", metavar="REGION",
                   help="the S3 region (default: AWS_REGION, AWS_DEFAULT_REGION, the "
                        "profile's region, else us-east-1)")
    g.add_argument("--endpoint-url", metavar="URL",
                   help="the S3 endpoint, for S3-compatible stores (default: "
                        "AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, the profile's services "
                        "section or endpoint_url, else AWS)")



def _add_run_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--manifest", metavar="PATH_OR_URL",
                   help="manifest: CSV bucket,key[,versionId] (keys URL-encoded), JSON Lines "
                        "or {\"entries\": [...]} JSON; a local path or a store URL")
    p.add_argument("--operation", required=True, metavar="OP",
                   help="the operation, by alias or Amazon's name: " + OPERATION_HELP +
                        "; or Amazon's Operation JSON, e.g. "
                        "'{\"S3PutObjectTagging\": {\"TagSet\": [...]}}'")
    p.add_argument("--dry-run", action="store_true",
                   help="validate and prepare, and write a report of what would be done, "
                        "without touching any object")
    g = p.add_argument_group("copy and replicate")
    g.add_argument("--target", metavar="URL",
                   help="target bucket (name, arn:aws:s3:::name, s3://b/prefix, "
                        "file:///folder, gs://b, az://account/container)")
    g.add_argument("--target-key-prefix", default="", metavar="P",
                   help="key prefix at the target (Amazon's TargetKeyPrefix: P/key)")
    g.add_argument("--storage-class", metavar="CLASS", help="StorageClass (S3 targets)")
    g.add_argument("--metadata-directive", choices=("COPY", "REPLACE"))
    g.add_argument("--content-type", metavar="TYPE",
                   help="new Content-Type (implies --metadata-directive REPLACE)")
    g.add_argument("--metadata", action="append", default=[], metavar="K=V",
                   help="new user metadata (repeatable; implies REPLACE)")
    g.add_argument("--new-tag", action="append", default=[], metavar="K=V",
                   help="replace the copies' tags (NewObjectTagging; repeatable)")
    g.add_argument("--object-lock-mode", choices=("COMPLIANCE", "GOVERNANCE"))
    g.add_argument("--object-lock-retain-until", metavar="ISO8601")
    g.add_argument("--object-lock-legal-hold", choices=("ON", "OFF"))
    g = p.add_argument_group("comparing with the target (copy, verify)")
    g.add_argument("--skip-unchanged", metavar="MODE",
                   help="copy: skip objects already the same at the target, by MODE: "
                        + MODE_HELP + ". With --manifest each task HEADs its target, and a "
                        "skipped one is reported succeeded, \"unchanged\". With "
                        "--from-listing the target is listed too and the job's manifest is "
                        "the difference of the two listings (new and changed objects); how "
                        "many were skipped is in the summary and the job's Description")
    g.add_argument("--delete-extraneous", action="store_true",
                   help="with --from-listing and --skip-unchanged: once the copy job is "
                        "Complete, delete the target objects the source lacks, as a second "
                        "job (operation delete; its id is printed); needs --confirm-delete")
    g.add_argument("--verify", action="store_true",
                   help="copy: after each copy, compare the copy with its source (by "
                        "--compare) before the task counts as succeeded")
    g.add_argument("--compare", metavar="MODE", default=None,
                   help="verify, copy --verify: how a copy is compared with its source: "
                        + MODE_HELP + " (default etag)")
    g = p.add_argument_group("put-tagging")
    g.add_argument("--tag", action="append", default=[], metavar="K=V",
                   help="a tag of the new tag set (repeatable; at most 10)")
    g = p.add_argument_group("put-acl (and copy)")
    g.add_argument("--acl", metavar="CANNED",
                   help="canned ACL: private, public-read, bucket-owner-full-control, ...")
    g.add_argument("--grant", action="append", default=[], metavar="PERMISSION=TYPE:ID",
                   help="put-acl: a grant, e.g. READ=id:79a59df9... or READ=uri:http://acs."
                        "amazonaws.com/groups/global/AllUsers (repeatable; needs --owner-id)")
    g.add_argument("--owner-id", metavar="ID", help="put-acl: the owner's canonical id")
    g = p.add_argument_group("restore")
    g.add_argument("--days", type=int, metavar="N", help="ExpirationInDays")
    g.add_argument("--tier", choices=("BULK", "STANDARD"), help="GlacierJobTier (default BULK)")
    g = p.add_argument_group("put-retention and put-legal-hold")
    g.add_argument("--retention-mode", choices=("COMPLIANCE", "GOVERNANCE"))
    g.add_argument("--retain-until", metavar="ISO8601", help="e.g. 2030-01-01T00:00:00Z")
    g.add_argument("--bypass-governance", action="store_true",
                   help="BypassGovernanceRetention")
    g.add_argument("--legal-hold", choices=("ON", "OFF"))
    g = p.add_argument_group("invoke")
    g.add_argument("--function", metavar="TARGET",
                   help="python:package.module:function, command:'[\"prog\", \"arg\"]' "
                        "(argv, no shell; payload JSON on stdin, response JSON on stdout) "
                        "or arn:aws:lambda:...")
    g.add_argument("--invocation-schema", choices=("1.0", "2.0"), default="2.0")
    g.add_argument("--user-arg", action="append", default=[], metavar="K=V",
                   help="UserArguments passed to the function (repeatable)")
    g = p.add_argument_group("compute-checksum (and copy)")
    g.add_argument("--checksum-algorithm", metavar="ALG",
                   help="CRC32, CRC32C, CRC64NVME, MD5, SHA1, SHA256, SHA512, XXHASH64, "
                        "XXHASH3, XXHASH128")
    g.add_argument("--checksum-type", choices=("FULL_OBJECT", "COMPOSITE"),
                   default="FULL_OBJECT")
    g = p.add_argument_group("update-encryption")
    g.add_argument("--kms-key-arn", metavar="ARN",
                   help="the KMS key to encrypt each object with (SSE-KMS): AWS changes it in "
                        "place; other stores copy each object onto itself")
    g.add_argument("--bucket-key-enabled", choices=("true", "false"),
                   help="S3 Bucket Keys for the new encryption")
    g = p.add_argument_group("generated manifest (instead of --manifest)")
    g.add_argument("--from-listing", metavar="URL",
                   help="list this bucket or store URL (s3://b, file:///folder) for the objects")
    g.add_argument("--prefix", action="append", default=[], metavar="P",
                   help="keys starting with P (repeatable: any of them)")
    g.add_argument("--suffix", action="append", default=[], metavar="S",
                   help="keys ending with S (repeatable)")
    g.add_argument("--substring", action="append", default=[], metavar="S",
                   help="keys containing S (repeatable)")
    g.add_argument("--created-after", metavar="ISO8601")
    g.add_argument("--created-before", metavar="ISO8601")
    g.add_argument("--larger-than", type=int, metavar="BYTES",
                   help="ObjectSizeGreaterThanBytes")
    g.add_argument("--smaller-than", type=int, metavar="BYTES", help="ObjectSizeLessThanBytes")
    g.add_argument("--match-storage-class", action="append", default=[], metavar="CLASS")
    g = p.add_argument_group("delete")
    g.add_argument("--confirm-delete", action="store_true",
                   help="required to run delete (objects are removed for good)")
    p.add_argument("--report", metavar="URL",
                   help="completion report location (file:///folder or s3://bucket/prefix; "
                        "default: the job folder)")
    p.add_argument("--report-scope", default="AllTasks", choices=("AllTasks", "FailedTasksOnly"))
    p.add_argument("--workers", type=int, default=0, metavar="N",
                   help="worker processes (default: one per core)")
    p.add_argument("--concurrency", type=int, default=64, metavar="M",
                   help="tasks in flight per worker (default 64)")
    p.add_argument("--chunk-size", type=int, default=0, metavar="K",
                   help="manifest rows per chunk: the unit of checkpoint and report part "
                        "(default 10000, fewer for small manifests so every worker gets "
                        "several; with --engine ray up to 50000 for large ones, as long as "
                        "each actor gets 16)")
    p.add_argument("--max-attempts", type=int, default=5, metavar="N",
                   help="attempts per task for retryable errors (default 5)")
    p.add_argument("--max-ops-per-second", type=float, default=0.0, metavar="N",
                   help="limit the job to N tasks per second (all workers together)")
    p.add_argument("--max-bytes-per-second", type=float, default=0.0, metavar="N",
                   help="limit the bytes copied through batchops per second")
    p.add_argument("--task-timeout", type=float, default=3600.0, metavar="SECONDS",
                   help="a task still running after SECONDS fails (and is retried); a "
                        "worker stuck that long in a local call is replaced and its chunk "
                        "runs again (default 3600; 0: no limit)")
    p.add_argument("--failure-threshold", type=float, default=0.5, metavar="RATIO",
                   help="fail the job once at least 1,000 tasks ran and more than RATIO of "
                        "them failed (Amazon's rule: 0.5)")
    p.add_argument("--bucket-map", action="append", default=[], metavar="NAME=URL",
                   help="send a bucket name to any store URL, or give an S3 bucket its own "
                        "settings: photos=s3://photos?profile=minio (repeatable)")
    p.add_argument("--description", default="", metavar="TEXT")
    p.add_argument("--priority", type=int, default=10, metavar="N")
    p.add_argument("--in-process", action="store_true",
                   help="run tasks in this process instead of worker processes (needed for "
                        "memory:// stores)")
    _add_engine_flags(p)
    _add_output_flags(p)


def _add_engine_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="local: worker processes on this machine (default); ray: workers "
                        "are Ray actors across a cluster (pip install 'batchops[ray]'); "
                        "the job folder ($BATCHOPS_HOME) must be on a path every node "
                        "sees, and --workers counts actors (one CPU each)")
    p.add_argument("--ray-address", metavar="ADDRESS",
                   help="with --engine ray: the cluster to join (auto, ray://head:10001, "
                        "head:6379; default: RAY_ADDRESS, else a local Ray instance is "
                        "started)")


def _add_settings_flags(p: argparse.ArgumentParser, when: str) -> None:
    """Settings that change how fast a job runs, not what it does (resume, retry-failed);
    None: as the job has them."""
    g = p.add_argument_group(f"settings {when}")
    g.add_argument("--workers", type=int, metavar="N", help="worker processes")
    g.add_argument("--concurrency", type=int, metavar="M", help="tasks in flight per worker")
    g.add_argument("--max-ops-per-second", type=float, metavar="N",
                   help="limit the job to N tasks per second (0: no limit)")
    g.add_argument("--max-bytes-per-second", type=float, metavar="N",
                   help="limit the bytes copied per second (0: no limit)")


def _add_notify_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--notify", metavar="URL",
                   help="on each status change of the job, POST a JSON event (in the shape "
                        "of S3 Batch Operations' EventBridge events) to this http(s) URL; "
                        "or command:'[\"prog\", \"arg\"]' runs that argv (no shell) with "
                        "the event on its stdin. Retried with backoff; the job never waits")


def _add_output_flags(p: argparse.ArgumentParser,
                      json_help: str = "print the final job as DescribeJob JSON instead "
                                       "of a summary") -> None:
    p.add_argument("--json", action="store_true", help=json_help)
    p.add_argument("--no-progress", action="store_true", help="no progress display")


def _retitle_aws_flags(p: argparse.ArgumentParser, title: str) -> None:
    """Give `p`'s AWS flag group (from `command()`) a title that fits that command."""
    for group in p._action_groups:
        if group.title and group.title.startswith("AWS settings"):
            group.title = title


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="batchops",
        description="Amazon S3 Batch Operations as a program you run yourself: one "
                    "operation over every object of a manifest, resumable after any stop, "
                    "with Amazon-format completion reports.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, **kw: Any) -> argparse.ArgumentParser:
        """A command, with aws-cli's --profile, --region and --endpoint-url."""
        p = sub.add_parser(name, **kw)
        _add_aws_flags(p)
        if name not in ("bench", "demo", "diff"):
            p.add_argument("--job-store", metavar="URL",
                           help="where jobs are kept: a folder, or an object-store prefix "
                                "every node of a cluster reaches (s3://bucket/prefix); "
                                "default: BATCHOPS_HOME, else ~/.batchops")
        return p

    run = command(
        "run", help="create a job and run it in the foreground",
        description="Create a job from a manifest and run it now, with live progress. "
                    "Ctrl-C stops it with its checkpoint saved; `batchops resume` continues.",
        epilog=EPILOG + "\nexample:\n  batchops run --manifest m.csv --operation copy "
                        "--target s3://backup --target-key-prefix 2024\n",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_run_flags(run)
    _add_notify_flag(run)

    resume = command(
        "resume", help="continue an interrupted or killed job from its checkpoint",
        description="Continue a job from its checkpoint: finished chunks are skipped, "
                    "chunks that were running run again. Refuses a manifest that changed.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    resume.add_argument("job_id", metavar="JOB_ID")
    resume.add_argument("--in-process", action="store_true",
                        help="run tasks in this process instead of worker processes")
    resume.add_argument("--report", metavar="URL",
                        help="write the report here from now on (a job whose report could "
                             "not be written keeps its work: resume it with another "
                             "location)")
    _add_settings_flags(resume, "from now on (what the job does stays as it was)")
    _add_engine_flags(resume)
    _add_output_flags(resume)
    _add_notify_flag(resume)

    retry = command(
        "retry-failed", help="run a new job over every failed task of a finished job",
        description="Create a job whose manifest is every failed-tasks part of JOB_ID (all "
                    "its chunks), with the same operation, target and settings, and run "
                    "it. Its description names the job it retries. Prints the new job id.",
        epilog="example (copy again what verify found different):\n  batchops "
               "retry-failed JOB_ID --operation copy\n",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    retry.add_argument("job_id", metavar="JOB_ID")
    retry.add_argument("--operation", metavar="OP",
                       help="another operation for the failed objects (its target kept), "
                            "e.g. copy for the failures of a verify job")
    retry.add_argument("--operation-overrides", metavar="JSON",
                       help="operation parameters to change, as Amazon names them (inline "
                            "JSON or file://path), e.g. '{\"TargetKeyPrefix\": \"retry\"}'")
    retry.add_argument("--report", metavar="URL", help="the new job's report location")
    retry.add_argument("--in-process", action="store_true",
                       help="run tasks in this process instead of worker processes")
    _add_settings_flags(retry, "of the new job (default: the old job's)")
    _add_engine_flags(retry)
    _add_output_flags(retry)

    delete_job = command(
        "delete-job", help="remove a job's folder (never a running job's)",
        description="Remove everything kept about a job: job.json, its manifest copy, "
                    "markers, report parts and log (a report published elsewhere stays). "
                    "A running job is refused.")
    delete_job.add_argument("job_id", metavar="JOB_ID")

    prune = command(
        "prune", help="remove the folders of finished jobs older than an age",
        description="Remove every job in the given finished statuses that ended (or, "
                    "never started, was created) longer ago than --older-than. Running "
                    "jobs are never removed.",
        epilog="example:\n  batchops prune --older-than 30d --status "
               "Complete,Cancelled,Failed\n",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    prune.add_argument("--older-than", required=True, metavar="AGE",
                       help="30d, 12h, 90m, 2w, 45s")
    prune.add_argument("--status", default="Complete,Cancelled,Failed", metavar="S,S",
                       help="finished statuses to remove (default Complete,Cancelled,Failed)")
    prune.add_argument("--dry-run", action="store_true",
                       help="print the jobs that would be removed, remove nothing")

    describe = command(
        "describe-job", help="print a job as DescribeJob JSON",
        description="Print {\"Job\": {...}} in the shape of Amazon's DescribeJob. Works "
                    "while the job runs in another process.")
    describe.add_argument("--job-id", required=True, metavar="ID")
    describe.add_argument("--account-id", help="accepted and ignored (Amazon compatibility)")
    describe.add_argument("--extended", action="store_true",
                          help="add a \"Batchops\" member: retries, throttling, settings")

    dif = command(
        "diff", help="compare two listings: what a copy would still have to do",
        description=textwrap.fill(width=79, text=(
                    "List SOURCE_URL and TARGET_URL (s3://bucket/prefix, file:///folder, "
                    "gs://, az://) and join the two listings on the key, in bounded memory "
                    "(Polars' streaming engine): each source object is new (not at the "
                    "target), changed or unchanged, and each target object the source lacks "
                    "is extraneous. The source key K is compared with TARGET_URL's prefix "
                    "followed by K, where `run --operation copy --target TARGET_URL` puts "
                    "it. --out gets the new and changed objects as a CSV manifest "
                    "(bucket,key, keys URL-encoded) for `run --manifest`.")),
        epilog="example:\n  batchops diff s3://src file:///backup --compare size+mtime "
               "--out todo.csv\n  batchops run --manifest todo.csv --operation copy "
               "--target file:///backup\n",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    dif.add_argument("source", metavar="SOURCE_URL")
    dif.add_argument("target", metavar="TARGET_URL")
    dif.add_argument("--compare", default="size+mtime", metavar="MODE",
                     help=MODE_HELP + " (default size+mtime)")
    dif.add_argument("--out", required=True, metavar="MANIFEST.csv",
                     help="the manifest of the new and changed source objects")
    dif.add_argument("--extraneous-out", metavar="MANIFEST.csv",
                     help="the manifest of the extraneous target objects (for a delete job)")
    dif.add_argument("--bucket-map", action="append", default=[], metavar="NAME=URL")
    dif.add_argument("--json", action="store_true",
                     help="print the counts as JSON: {\"new\": N, \"changed\": N, ...}")

    lst = command("list-jobs", help="print jobs as ListJobs JSON",
                         description="Print {\"Jobs\": [...]} in the shape of Amazon's "
                                     "ListJobs, newest first.")
    lst.add_argument("--job-statuses", nargs="*", default=[], metavar="STATUS")
    lst.add_argument("--max-results", type=int, metavar="N")
    lst.add_argument("--next-token", metavar="TOKEN")
    lst.add_argument("--account-id", help="accepted and ignored (Amazon compatibility)")

    create = command(
        "create-job", help="create a job from Amazon's CreateJob JSON (run it with `runner`)",
        description="Create a job as `aws s3control create-job` does, from the same JSON: "
                    "--cli-input-json file://job.json, or the same members as JSON-valued "
                    "flags (inline JSON or file://path). Prints {\"JobId\": ...}. The job is "
                    "Ready (or Suspended with --confirmation-required) and runs under "
                    "`batchops runner`. --account-id is the account in the JobArn; --role-arn is "
                    "kept and shown by describe-job (the job runs with your own AWS "
                    "configuration). "
                    "Bucket ARNs (arn:aws:s3:::name) and object ARNs "
                    "(arn:aws:s3:::name/key) name S3 buckets and objects; store URLs "
                    "(file:///..., gs://...) work too.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    create.add_argument("--cli-input-json", metavar="JSON", help="the whole CreateJob request")
    for flag in ("--operation", "--manifest", "--report", "--tags", "--manifest-generator"):
        create.add_argument(flag, metavar="JSON")
    create.add_argument("--priority", type=int)
    create.add_argument("--confirmation-required", dest="confirmation_required",
                        action="store_true", default=None)
    create.add_argument("--no-confirmation-required", dest="confirmation_required",
                        action="store_false")
    create.add_argument("--client-request-token", metavar="TOKEN")
    create.add_argument("--description", metavar="TEXT")
    create.add_argument("--account-id", help="the account in the job's JobArn")
    create.add_argument("--role-arn", help="kept and shown by describe-job")
    create.add_argument("--bucket-map", action="append", default=[], metavar="NAME=URL")
    create.add_argument("--workers", type=int, default=0, metavar="N")
    create.add_argument("--concurrency", type=int, default=64, metavar="M")
    create.add_argument("--chunk-size", type=int, default=0, metavar="K")
    create.add_argument("--failure-threshold", type=float, default=0.5, metavar="RATIO")
    create.add_argument("--max-ops-per-second", type=float, default=0.0, metavar="N")

    runner = command(
        "runner", help="run Ready jobs in priority order",
        description="Run the job store's Ready (and Paused) jobs, highest priority first, "
                    "until none is left. A job that becomes Ready with a higher priority "
                    "pauses the running one, which resumes afterwards. Exits 3 if a job "
                    "failed or could not run, 1 if a job had failed tasks, else 0.")
    runner.add_argument("--watch", action="store_true", help="keep waiting for new jobs")
    _add_engine_flags(runner)
    runner.add_argument("--poll", type=float, default=1.0, metavar="SECONDS")
    runner.add_argument("--json", action="store_true", help="one JSON line per job run")
    _add_notify_flag(runner)
    _retitle_aws_flags(runner, "AWS settings (as aws-cli's): given, they become the "
                               "settings of every job this runner runs, as with "
                               "`resume JOB_ID --profile ...`")

    serve = command(
        "serve", help="serve the s3control jobs API (boto3, aws-cli) and run its jobs",
        description="Serve Amazon's S3 Control jobs operations (CreateJob, DescribeJob, "
                    "ListJobs, UpdateJobStatus, UpdateJobPriority, Get/Put/DeleteJobTagging) "
                    "over REST-XML, as boto3 and aws-cli call them, on the job store; a pool "
                    "of runners runs its Ready jobs in priority order, and on start resumes "
                    "every job a stopped server left running. Clients reach it through a "
                    "wildcard DNS name (botocore sends ACCOUNT.HOST) or with the server as "
                    "their HTTP proxy (see the README).")
    serve.add_argument("--listen", default="127.0.0.1:8750", metavar="HOST:PORT",
                       help="address to listen on (default 127.0.0.1:8750; port 0: any free "
                            "port, printed)")
    serve.add_argument("--runners", type=int, default=2, metavar="N",
                       help="jobs run at once (default 2)")
    serve.add_argument("--auth", choices=("sigv4", "none"),
                       help="sigv4: verify each request's signature against --keys (the "
                            "default with --keys, and whenever --listen is not a loopback "
                            "address); none: trust x-amz-account-id (loopback only)")
    serve.add_argument("--keys", metavar="FILE",
                       help="the operators' keys, in ~/.aws/credentials' shape: one section "
                            "per key with aws_access_key_id, aws_secret_access_key and "
                            "aws_account_id (the account whose jobs it reaches); mode 600. "
                            "Kept in memory only, never in the job store")
    _add_notify_flag(serve)
    g = serve.add_argument_group("settings of every job this server creates (as "
                                 "create-job's)")
    g.add_argument("--workers", type=int, default=0, metavar="N",
                   help="worker processes per job (default: one per core)")
    g.add_argument("--concurrency", type=int, default=64, metavar="M")
    g.add_argument("--chunk-size", type=int, default=0, metavar="K")
    g.add_argument("--max-ops-per-second", type=float, default=0.0, metavar="N")
    _retitle_aws_flags(serve, "AWS settings (as aws-cli's): the settings of every job this "
                              "server creates")

    ujs = command("update-job-status", help="confirm (Ready) or cancel a job",
                         description="Ready confirms a Suspended job; Cancelled stops a job "
                                     "within seconds wherever it runs (its report covers the "
                                     "tasks that ran).")
    ujs.add_argument("--job-id", required=True, metavar="ID")
    ujs.add_argument("--requested-job-status", required=True, choices=("Ready", "Cancelled"))
    ujs.add_argument("--status-update-reason", metavar="TEXT")
    ujs.add_argument("--account-id", help="accepted and ignored")

    ujp = command("update-job-priority", help="change a job's priority")
    ujp.add_argument("--job-id", required=True, metavar="ID")
    ujp.add_argument("--priority", required=True, type=int)
    ujp.add_argument("--account-id", help="accepted and ignored")

    for name, text in (("get-job-tagging", "print a job's tags"),
                       ("put-job-tagging", "replace a job's tags"),
                       ("delete-job-tagging", "remove a job's tags")):
        t = command(name, help=text)
        t.add_argument("--job-id", required=True, metavar="ID")
        t.add_argument("--account-id", help="accepted and ignored")
        if name == "put-job-tagging":
            t.add_argument("--tags", required=True, metavar="JSON",
                           help='[{"Key": "k", "Value": "v"}, ...] or file://tags.json')

    bench_about = (
        "Benchmark any store batchops reaches, as MinIO's warp does for S3: `batchops bench "
        "URL --workload W` prepares the objects the workload reads (not counted), measures, "
        "cleans the prefix up (unless --keep) and prints ops/s, MiB/s, latency percentiles "
        "and errors per operation. Nothing is retried: every error is counted by its code.",
        "Client CPU per operation is user + sys of the worker processes over their measured "
        "seconds plus this process's over the same window (preparation, warm-up and "
        "clean-up left out), divided by the operations.",
        "`batchops bench compare BEFORE AFTER` compares two runs written with --out (or "
        "--json > file.json): per operation, the change in ops/s and in p50, p90 and p99 "
        "latency, each with a ± and a verdict (\"slower by 48 % ± 3 %\", or \"no "
        "significant difference\"). The ± is two standard errors from the spread of the "
        "per-second figures inside the two runs: two runs are all it has, so it cannot see "
        "what changes from one run to the next (repeat the pair for that).",
        "`batchops bench show RESULTS` prints one run again, second by second.")
    bench = command(
        "bench", help="benchmark a store: throughput, latency percentiles, a picture",
        description="\n\n".join(textwrap.fill(para, 79) for para in bench_about),
        epilog="examples:\n"
               "  batchops bench s3://bucket/bench --workload get --size 1MiB --duration 30s\n"
               "  batchops bench memory:// --workload put --size 4KiB --count 100000\n"
               "  batchops bench file:///mnt/nfs/x --workload mixed --mix get=70,put=30 "
               "--autoterm --out run.parquet --plot run.png\n"
               "  batchops bench compare before.parquet after.parquet\n",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    bench.add_argument("target", metavar="URL|compare|show",
                       help="the store URL (s3://bucket/prefix, gs://, az://, file:///, "
                            "memory://), or compare/show")
    bench.add_argument("results", nargs="*", metavar="RESULTS",
                       help="compare: BEFORE AFTER; show: RESULTS (files written by --out)")
    bench.add_argument("--workload", default="put", metavar="W",
                       help="put, get, stat, delete, list, mixed, multipart, or a "
                            "Batch Operations operation, run by the job's own code: copy "
                            "(to copies/ on the same store), tagging, restore, checksum "
                            "(default put)")
    bench.add_argument("--size", default="4KiB", metavar="SIZE[,SIZE...]",
                       help="object size, or a list used in turn (default 4KiB)")
    bench.add_argument("--size-random", metavar="LOW..HIGH",
                       help="random sizes between LOW and HIGH, e.g. 1KiB..8MiB")
    bench.add_argument("--objects", type=int, default=1000, metavar="N",
                       help="objects prepared per worker for reading workloads (default 1000)")
    bench.add_argument("--concurrency", type=int, default=16, metavar="C",
                       help="operations in flight per worker (default 16)")
    bench.add_argument("--workers", type=int, default=1, metavar="W",
                       help="worker processes (default 1)")
    bench.add_argument("--duration", default="10s", metavar="TIME",
                       help="how long to measure, e.g. 30s or 5m (default 10s)")
    bench.add_argument("--count", type=int, default=0, metavar="N",
                       help="measure N operations instead of a duration")
    bench.add_argument("--warmup", default="0s", metavar="TIME",
                       help="run this long before measuring (not counted)")
    bench.add_argument("--autoterm", action="store_true",
                       help="stop once throughput is stable (as warp's --autoterm): every "
                            "one of the last --autoterm-segments seconds within "
                            "--autoterm-pct of their median")
    bench.add_argument("--autoterm-segments", type=int, default=7, metavar="N",
                       help="seconds autoterm looks back over (default 7)")
    bench.add_argument("--autoterm-pct", type=float, default=7.5, metavar="PCT",
                       help="how far from the median a second may be, in %% (default 7.5)")
    bench.add_argument("--mix", metavar="OP=W,...",
                       help="mixed: weights of get, stat, put, delete "
                            "(default get=45,stat=30,put=15,delete=10); deletes take "
                            "objects of their own (a reserve prepared for them, then the "
                            "run's PUTs), so no GET or HEAD races a delete")
    bench.add_argument("--prefix", default="", metavar="P",
                       help="a prefix below the URL for the benchmark's objects")
    bench.add_argument("--keep", action="store_true", help="leave the objects in place")
    bench.add_argument("--retries", type=int, default=0, metavar="N",
                       help="retry a retryable failure up to N times; retries are counted "
                            "apart and an operation's latency includes them (default 0: "
                            "none; bench never adapts its concurrency)")
    bench.add_argument("--out", metavar="FILE.parquet",
                       help="per-second segments and histograms, for Polars (see README)")
    bench.add_argument("--plot", metavar="FILE.png",
                       help="a picture: throughput and latency over time, latency by "
                            "percentile")
    _add_output_flags(bench, json_help=(
        "print the run as one JSON document instead of the table: the spec, per-operation "
        "ops, bytes, errors by code and latency percentiles (ms), client CPU, every "
        "per-second segment and the merged histograms (`bench compare`/`show` read it "
        "back from a .json file); with compare or show, their result as JSON"))
    _retitle_aws_flags(bench, "AWS settings (as aws-cli's; for an s3:// URL, unless its "
                              "query sets its own: s3://b/p?profile=P&region=R)")

    # Not `command()`: the demo copies between two local folders, where an AWS profile,
    # region or endpoint means nothing, so it takes none.
    demo = sub.add_parser(
        "demo", help="make sample objects in a local folder and copy them with a job",
        description="Create a few thousand sample objects under a local folder, run a copy "
                    "job on them with live progress, and print the job id, the summary and "
                    "where the report is. Local folders only: no AWS settings.")
    demo.add_argument("--dir", default=None, metavar="FOLDER",
                      help="where to make the sample objects (default: $BATCHOPS_HOME/demo)")
    demo.add_argument("--objects", type=int, default=5000, metavar="N")
    demo.add_argument("--workers", type=int, default=0, metavar="N")
    _add_output_flags(demo)
    return parser
