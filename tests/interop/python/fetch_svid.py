#!/usr/bin/env python3
"""Independent-client interop check for spike-dev-agent, using py-spiffe (PyPI `spiffe`).

Fetches the default X509-SVID, the whole X.509 context and the X.509 bundles from the
Workload API at SPIFFE_ENDPOINT_SOCKET (or --socket), and checks the SPIFFE ID and that the
SVID chains to the bundle's CA. Exits non-zero with a message on any mismatch.

    pip install spiffe
    python3 fetch_svid.py --socket unix:///tmp/spike-dev-agent/nexus.sock \
        --expect-id spiffe://spike.ist/spike/nexus
"""

import argparse
import os
import sys

from cryptography.hazmat.primitives.asymmetric import ec
from spiffe import WorkloadApiClient
from spiffe.spiffe_id.spiffe_id import TrustDomain


def fail(message: str) -> None:
    print(f"FAIL: {message}", file=sys.stderr)
    sys.exit(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--socket", default=os.environ.get("SPIFFE_ENDPOINT_SOCKET"))
    parser.add_argument("--expect-id", required=True, help="expected SPIFFE ID of the SVID")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per call")
    args = parser.parse_args()
    if not args.socket:
        fail("no socket: pass --socket or set SPIFFE_ENDPOINT_SOCKET")

    client = WorkloadApiClient(socket_path=args.socket, default_timeout=args.timeout)
    try:
        svid = client.fetch_x509_svid()
        got = str(svid.spiffe_id)
        if got != args.expect_id:
            fail(f"SVID is for {got}, expected {args.expect_id}")
        leaf = svid.leaf
        print(f"svid: {got} (not after {leaf.not_valid_after_utc.isoformat()})")

        context = client.fetch_x509_context()
        ids = [str(s.spiffe_id) for s in context.x509_svids]
        if not ids or ids[0] != args.expect_id:
            fail(f"context SVIDs are {ids}, expected {args.expect_id} first")

        trust_domain = TrustDomain(args.expect_id.split("/")[2])
        bundles = client.fetch_x509_bundles()
        bundle = bundles.get_bundle_for_trust_domain(trust_domain)
        if bundle is None or not bundle.x509_authorities:
            fail(f"no X.509 bundle for trust domain {trust_domain}")
        print(f"bundle: {trust_domain} with {len(bundle.x509_authorities)} authority(ies)")

        # The leaf must be signed by a bundle authority (P-256 ECDSA for spike-dev-agent).
        verified = False
        for authority in bundle.x509_authorities:
            if authority.subject != leaf.issuer:
                continue
            public_key = authority.public_key()
            if isinstance(public_key, ec.EllipticCurvePublicKey):
                public_key.verify(
                    leaf.signature,
                    leaf.tbs_certificate_bytes,
                    ec.ECDSA(leaf.signature_hash_algorithm),
                )
                verified = True
        if not verified:
            fail("the SVID's leaf is not signed by any authority in the bundle")
        print("OK: py-spiffe fetched the expected X509-SVID and a bundle that verifies it")
    finally:
        client.close()


if __name__ == "__main__":
    main()
