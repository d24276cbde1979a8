"""Bulk import: files dropped in the landing bucket become stored resources and reports.

- ``reader``: streamed decompression, lines, line-aligned parts, poison detection;
- ``pipeline``: lines / JSON documents → validated, resolved, stored versions (batched writes);
- ``results``: SUCCESS / FAILURE parts and the manifest in the results bucket;
- ``jobs``: job and chunk records in the resource table, job views for the API;
- ``service``: the use case (S3 notifications and chunk messages → jobs), wired in
  ``handlers.bulk_import`` and ``fhirlake.ingest.bootstrap``.
"""
