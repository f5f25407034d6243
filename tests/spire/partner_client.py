#!/usr/bin/env python3
"""A workload of a *federated* trust domain calling SPIKE Nexus with its SVID from files.

Usage: partner_client.py <nexus host:port> <svid dir> <spike bundle.pem> <secret path>

<svid dir> holds spiffe-helper style files (svid.pem, svid_key.pem) issued by the partner
trust domain's CA; <spike bundle.pem> is the bundle of Nexus's trust domain. Nexus is
authenticated by its chain to that bundle and by its SPIFFE ID (URI SAN below
spiffe://<td>/spike/nexus on a '/' boundary); hostnames are not used (SPIFFE IDs are).

Prints `<HTTP status> <JSON body>` of `POST /v1/store/secrets?action=get` and exits 0 when the
request got an answer (whatever the status), 1 when it could not be made. Python's standard
library only.
"""

import http.client
import json
import ssl
import sys


def main() -> int:
    addr, svid_dir, bundle, path = sys.argv[1:5]
    host, port = addr.rsplit(":", 1)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = False  # SPIFFE: the peer is checked by its URI SAN below
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cafile=bundle)
    ctx.load_cert_chain(f"{svid_dir}/svid.pem", f"{svid_dir}/svid_key.pem")
    conn = http.client.HTTPSConnection(host, int(port), context=ctx, timeout=10)
    try:
        conn.connect()
        uris = [v for k, v in conn.sock.getpeercert().get("subjectAltName", ()) if k == "URI"]
        td = "spike.ist"
        nexus = f"spiffe://{td}/spike/nexus"
        if len(uris) != 1 or not (uris[0] == nexus or uris[0].startswith(nexus + "/")):
            print(f"peer is not SPIKE Nexus of {td}: {uris}", file=sys.stderr)
            return 1
        body = json.dumps({"path": path})
        conn.request("POST", "/v1/store/secrets?action=get", body=body,
                      headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        print(resp.status, resp.read().decode())
        return 0
    except (OSError, ssl.SSLError, http.client.HTTPException) as e:
        print(f"request failed: {e!r}", file=sys.stderr)
        return 1
    finally:
        conn.close()


if __name__ == "__main__":
    sys.exit(main())
