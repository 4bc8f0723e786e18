"""Schemathesis hooks for the cloud's contract test (cloud/tests/it/contract.rs).

Every generated request is authenticated the way a real client would: operations whose
security names the device scheme are signed as an enrolled test device (ed25519 over the
canonical string of `sentra_protocol::auth::signing_string`), the others carry the operator's
API token. Credentials come from the environment the Rust test sets:
SENTRA_CONTRACT_DEVICE_ID, SENTRA_CONTRACT_DEVICE_KEY (hex of the 32-byte ed25519 seed) and
SENTRA_CONTRACT_OPERATOR_TOKEN.

The signature is computed by requests' auth hook on the prepared request, so it covers the exact
path, query and body bytes sent. Schemathesis's `ignored_auth` probes are sent without it.

Ed25519 signing is the RFC 8032 section 6 reference code (pure Python, standard library only),
so the fuzzer's virtualenv needs no package besides schemathesis.
"""

import hashlib
import os
import secrets
import time

import requests
import schemathesis

# --- Ed25519 signing, RFC 8032 section 6 -------------------------------------------------------
_P = 2**255 - 19
_Q = 2**252 + 27742317777372353535851937790883648493


def _inv(x):
    return pow(x, _P - 2, _P)


_D = -121665 * _inv(121666) % _P
_SQRT_M1 = pow(2, (_P - 1) // 4, _P)


def _add(a, b):
    A = (a[1] - a[0]) * (b[1] - b[0]) % _P
    B = (a[1] + a[0]) * (b[1] + b[0]) % _P
    C = 2 * a[3] * b[3] * _D % _P
    D = 2 * a[2] * b[2] % _P
    E, F, G, H = B - A, D - C, D + C, B + A
    return (E * F, G * H, F * G, E * H)


def _mul(s, p):
    q = (0, 1, 1, 0)
    while s > 0:
        if s & 1:
            q = _add(q, p)
        p = _add(p, p)
        s >>= 1
    return q


def _recover_x(y, sign):
    x2 = (y * y - 1) * _inv(_D * y * y + 1)
    if x2 == 0:
        return 0
    x = pow(x2, (_P + 3) // 8, _P)
    if (x * x - x2) % _P != 0:
        x = x * _SQRT_M1 % _P
    if (x & 1) != sign:
        x = _P - x
    return x


_GY = 4 * _inv(5) % _P
_GX = _recover_x(_GY, 0)
_G = (_GX, _GY, 1, _GX * _GY % _P)


def _compress(p):
    zinv = _inv(p[2])
    x = p[0] * zinv % _P
    y = p[1] * zinv % _P
    return int.to_bytes(y | ((x & 1) << 255), 32, "little")


def ed25519_sign(seed, message):
    h = hashlib.sha512(seed).digest()
    a = int.from_bytes(h[:32], "little")
    a &= (1 << 254) - 8
    a |= 1 << 254
    public = _compress(_mul(a, _G))
    r = int.from_bytes(hashlib.sha512(h[32:] + message).digest(), "little") % _Q
    big_r = _compress(_mul(r, _G))
    k = int.from_bytes(hashlib.sha512(big_r + public + message).digest(), "little") % _Q
    return big_r + int.to_bytes((r + k * a) % _Q, 32, "little")


# --- Request authentication --------------------------------------------------------------------
class DeviceSignature(requests.auth.AuthBase):
    def __init__(self, device, seed):
        self.device = device
        self.seed = seed

    def __call__(self, request):
        import base64

        request.headers.pop("Authorization", None)
        body = request.body or b""
        if isinstance(body, str):
            body = body.encode("utf-8")
        timestamp = str(int(time.time() * 1000))
        nonce = secrets.token_hex(16)
        signed = "sentra-v1\n{}\n{}\n{}\n{}\n{}".format(
            request.method.upper(),
            request.path_url,
            timestamp,
            nonce,
            hashlib.sha256(body).hexdigest(),
        )
        signature = ed25519_sign(self.seed, signed.encode("utf-8"))
        request.headers["x-sentra-device"] = self.device
        request.headers["x-sentra-timestamp"] = timestamp
        request.headers["x-sentra-nonce"] = nonce
        request.headers["x-sentra-signature"] = base64.b64encode(signature).decode("ascii")
        return request


class Bearer(requests.auth.AuthBase):
    def __init__(self, token):
        self.token = token

    def __call__(self, request):
        for name in ("x-sentra-device", "x-sentra-timestamp", "x-sentra-nonce", "x-sentra-signature"):
            request.headers.pop(name, None)
        request.headers["Authorization"] = "Bearer " + self.token
        return request


class Webhook(requests.auth.AuthBase):
    """The payment gateway's signature: hex HMAC-SHA256 of `timestamp.body`."""

    def __init__(self, secret):
        self.secret = secret

    def __call__(self, request):
        import hmac

        body = request.body or b""
        if isinstance(body, str):
            body = body.encode("utf-8")
        timestamp = str(int(time.time()))
        mac = hmac.new(self.secret, timestamp.encode("ascii") + b"." + body, hashlib.sha256)
        request.headers["x-sentra-webhook-timestamp"] = timestamp
        request.headers["x-sentra-webhook-signature"] = mac.hexdigest()
        return request


def _schemes(case):
    security = case.operation.definition.raw.get("security") or []
    return [set(requirement) for requirement in security]


@schemathesis.auth(refresh_interval=None)
class CloudAuth:
    def get(self, case, context):
        # Schemathesis generates the security headers of one requirement into the case, and
        # leaves them out when it tests a request without them: sign only where it generated
        # all four, send the token only where it generated one.
        headers = {name.lower() for name in (case.headers or {})}
        schemes = _schemes(case)
        device = {"x-sentra-device", "x-sentra-timestamp", "x-sentra-nonce", "x-sentra-signature"}
        if any("device" in requirement for requirement in schemes) and device <= headers:
            return DeviceSignature(
                os.environ["SENTRA_CONTRACT_DEVICE_ID"],
                bytes.fromhex(os.environ["SENTRA_CONTRACT_DEVICE_KEY"]),
            )
        if any("bearer" in requirement for requirement in schemes) and "authorization" in headers:
            return Bearer(os.environ["SENTRA_CONTRACT_OPERATOR_TOKEN"])
        webhook = {"x-sentra-webhook-timestamp", "x-sentra-webhook-signature"}
        if case.operation.path == "/v1/payments/webhook" and webhook <= headers:
            return Webhook(os.environ["SENTRA_CONTRACT_WEBHOOK_SECRET"].encode("utf-8"))
        return None

    def set(self, case, data, context):
        case._auth = data


def _integral_floats_as_ints(value):
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**63:
        return int(value)
    if isinstance(value, list):
        return [_integral_floats_as_ints(item) for item in value]
    if isinstance(value, dict):
        return {key: _integral_floats_as_ints(item) for key, item in value.items()}
    return value


@schemathesis.hook
def before_call(context, case, kwargs):
    """JSON Schema counts 5.0 as an integer; the cloud's serde types, like the box's, read only
    5 as one. Send integral numbers the way every real client writes them."""
    if isinstance(case.body, (dict, list)):
        case.body = _integral_floats_as_ints(case.body)
