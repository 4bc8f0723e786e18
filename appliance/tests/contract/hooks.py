"""Schemathesis hooks for the box's contract run (appliance/tests/it/contract.rs).

Two request values are not free-form data but a statement about the request itself; a client
that sends them wrong is a broken client, and the box answers it as documented (tested in
tests/it/idempotency.rs and tests/it/photos.rs). So before each call:

- an `Idempotency-Key` the schema accepts is replaced by a fresh UUID: the key says "this is the
  same request as before", and random data reuses short keys with different bodies (422
  `idempotency_key_reused`, which is the documented answer to that client bug);
- `PUT /v1/blobs/{sha256}` with a well-formed digest gets the digest of the body it sends, as a
  real client computes it (a mismatch is 422 `digest_mismatch`).

Malformed keys and digests are left as generated, so the negative checks still see them.
"""

import hashlib
import re
import uuid

import schemathesis

_KEY = re.compile(r"^[\x21-\x7e]{1,128}$")
_DIGEST = re.compile(r"^[0-9A-Fa-f]{64}$")


@schemathesis.hook
def before_call(context, case, kwargs):
    headers = case.headers or {}
    for name in list(headers):
        if name.lower() == "idempotency-key" and isinstance(headers[name], str) and _KEY.match(headers[name]):
            headers[name] = str(uuid.uuid4())
    if case.operation.method.upper() == "PUT" and case.operation.path == "/v1/blobs/{sha256}":
        digest = (case.path_parameters or {}).get("sha256")
        body = case.body
        if isinstance(body, str):
            body = body.encode()
        if isinstance(digest, str) and _DIGEST.match(digest) and isinstance(body, (bytes, bytearray)):
            case.path_parameters["sha256"] = hashlib.sha256(body).hexdigest()
