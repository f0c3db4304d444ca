"""``wsgi:app`` for bench/attachments.py: the same app, with two changes for the bench's requests only.

- Its /static/ route serves BENCH_STATIC_DIR (a temporary folder holding copies of the bench's files) instead of
  the repository's static/, so one gunicorn serves the same bytes from a file and from the database.
- A download sent with ``X-Bench-Read: text`` reads its chunks the way the store did before it fetched bytea in
  binary (``bench.attachments.read_as_text``): before and after, measured on the same server in the same run.
"""

import os

from flask import request

from bench.attachments import read_as_text
from itsm.attachments import store
from wsgi import app

app.static_folder = os.environ["BENCH_STATIC_DIR"]  # read per request by send_static_file
served = store.read


def read(*args, **kwargs):
    return (read_as_text if request.headers.get("X-Bench-Read") == "text" else served)(*args, **kwargs)


store.read = read  # serving.response looks it up on the module at each download
