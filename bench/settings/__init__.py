"""Django settings for the benchmarks: one module per application measured.

Each module installs one queueing app only (mailroom, django-mailer or django-post_office), with
its own database, so the apps' tables never share a database. Environment:

- ``BENCH_DB``: ``sqlite`` (default) or ``postgres``.
- ``BENCH_DB_TAG``: a suffix for the database name, so a measurement that fills a table with a
  million rows (queue depth) does not share its database with the others.
- ``BENCH_SMTP_PORT``: the port of the counting SMTP sink.
"""
