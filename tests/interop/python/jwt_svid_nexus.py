#!/usr/bin/env python3
"""py-spiffe (PyPI `spiffe`) JWT-SVIDs against Nexus's JWT-SVID listener, over raw HTTPS.

An independent client end to end: py-spiffe fetches a JWT-SVID for the audience from the
Workload API at --socket (spike-dev-agent) and validates it against the JWT bundle the agent
publishes; then Python's own `ssl` and `urllib` (no SPIKE code) call Nexus's JWT listener at
--url, trusting the X.509 bundle py-spiffe returned (no hostname check: Nexus's certificate
names it by a SPIFFE URI SAN, not a DNS name) and sending `Authorization: Bearer <JWT-SVID>`.

Prints one line per step; the HTTP status of each request:

    svid <spiffe id>           the JWT-SVID py-spiffe fetched
    validated <spiffe id>      py-spiffe verified its signature with the agent's JWT bundle
    granted <status> <value>   read of --path (a policy grants it): 200 and the value of --key
    ungranted <status>         read of --denied-path (no policy grants it)
    tampered <status>          --path with the token's `sub` changed (signature now wrong)
    no-token <status>          --path without an Authorization header

    pip install spiffe
    python3 jwt_svid_nexus.py --socket unix:///tmp/agent/app.sock \
        --url https://127.0.0.1:8444 --path apps/py/db --denied-path apps/other/db --key pass
"""

import argparse
import base64
import json
import os
import ssl
import sys
import tempfile
import urllib.error
import urllib.request

from cryptography.hazmat.primitives.serialization import Encoding
from spiffe import JwtSvid, WorkloadApiClient
from spiffe.spiffe_id.spiffe_id import TrustDomain


def fail(message: str) -> None:
    print(f"FAIL: {message}", file=sys.stderr)
    sys.exit(1)


def b64url_decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def tamper_sub(token: str) -> str:
    """The same token with another `sub` claim and the original signature."""
    header, payload, signature = token.split(".")
    claims = json.loads(b64url_decode(payload))
    claims["sub"] = claims["sub"].rsplit("/", 1)[0] + "/impostor"
    return ".".join([header, b64url_encode(json.dumps(claims).encode()), signature])


def read_secret(url: str, path: str, token, context: ssl.SSLContext, timeout: float):
    """POSTs SPIKE's secret read; returns (status, parsed body or None)."""
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(
        f"{url}/v1/store/secrets?action=get",
        data=json.dumps({"path": path}).encode(),
        headers=headers,
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, context=context, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as e:
        e.read()
        return e.code, None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--socket", default=os.environ.get("SPIFFE_ENDPOINT_SOCKET"))
    parser.add_argument("--url", required=True, help="Nexus's JWT listener, https://...")
    parser.add_argument("--audience", default="spike-nexus")
    parser.add_argument("--path", required=True, help="a secret path the workload may read")
    parser.add_argument("--denied-path", required=True, help="a path it may not read")
    parser.add_argument("--key", required=True, help="the key of --path to print")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per call")
    args = parser.parse_args()
    if not args.socket:
        fail("no socket: pass --socket or set SPIFFE_ENDPOINT_SOCKET")

    client = WorkloadApiClient(socket_path=args.socket, default_timeout=args.timeout)
    try:
        svid = client.fetch_jwt_svid(audience={args.audience})
        spiffe_id = str(svid.spiffe_id)
        if args.audience not in svid.audience:
            fail(f"JWT-SVID audience is {svid.audience}, expected {args.audience}")
        print(f"svid {spiffe_id}", flush=True)

        trust_domain = TrustDomain(spiffe_id.split("/")[2])
        jwt_bundle = client.fetch_jwt_bundles().get_bundle_for_trust_domain(trust_domain)
        if jwt_bundle is None:
            fail(f"no JWT bundle for {trust_domain}")
        validated = JwtSvid.parse_and_validate(svid.token, jwt_bundle, {args.audience})
        print(f"validated {validated.spiffe_id}", flush=True)

        x509_bundle = client.fetch_x509_bundles().get_bundle_for_trust_domain(trust_domain)
        if x509_bundle is None or not x509_bundle.x509_authorities:
            fail(f"no X.509 bundle for {trust_domain}")
        pem = b"".join(a.public_bytes(Encoding.PEM) for a in x509_bundle.x509_authorities)
    finally:
        client.close()

    with tempfile.NamedTemporaryFile(suffix=".pem") as ca:
        ca.write(pem)
        ca.flush()
        context = ssl.create_default_context(cafile=ca.name)
    # The chain is still verified against the bundle; only the DNS name check is off.
    context.check_hostname = False
    context.verify_mode = ssl.CERT_REQUIRED

    status, body = read_secret(args.url, args.path, svid.token, context, args.timeout)
    value = ((body or {}).get("data") or {}).get(args.key)
    print(f"granted {status} {value}", flush=True)
    status, _ = read_secret(args.url, args.denied_path, svid.token, context, args.timeout)
    print(f"ungranted {status}", flush=True)
    status, _ = read_secret(args.url, args.path, tamper_sub(svid.token), context, args.timeout)
    print(f"tampered {status}", flush=True)
    status, _ = read_secret(args.url, args.path, None, context, args.timeout)
    print(f"no-token {status}", flush=True)


if __name__ == "__main__":
    main()
