"""`batchops bench`: benchmark any store batchops reaches (S3 and S3-compatible, GCS,
Azure, a folder, memory) with warp's workloads plus Batch Operations' own operations,
latency histograms in the native core, a picture, and comparisons between runs.

- spec.py: the flags, parsed and checked;
- run.py: one worker process (prepare, warm up, measure, clean up);
- driver.py: starts the workers, shows progress, merges;
- report.py: summary, table, JSON, Parquet, PNG, compare, show.
"""
