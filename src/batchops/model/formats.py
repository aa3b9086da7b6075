"""The names of the file formats batchops reads and writes (Amazon's, and ours)."""


from __future__ import annotations

CSV_FORMAT = "S3BatchOperations_CSV_20180820"
JSONL_FORMAT = "Batchops_JSONL_1"
INVENTORY_FORMAT = "S3InventoryReport_CSV_20161130"
REPORT_FORMAT = "Report_CSV_20180820"
REPORT_SCHEMA = "Bucket, Key, VersionId, TaskStatus, ErrorCode, HTTPStatusCode, ResultMessage"
SCOPES = ("AllTasks", "FailedTasksOnly")

