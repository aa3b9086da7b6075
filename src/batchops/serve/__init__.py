"""`batchops serve`: the s3control jobs API over HTTP, on the job store, with its runners.

    server.py   the command: settings, start (index, runners, socket), stop
    app.py      the routing table; the API's requests in and out
    restxml.py  botocore's s3control model, both ways: requests parsed, responses written
    auth.py     SigV4, verified with botocore's signer against the operators' keys
    api.py      what each operation does (schedule/create.py, schedule/control.py)
    index.py    the job store's index: ListJobs and the runners without reading every job
    runners.py  preparing in the background; the pool of runners (schedule/queue.py)
    console.py, consoleauth.py, static/   the web console at /, its sign-in and CSRF guard
    metrics.py  GET /metrics in Prometheus' text format
"""
