# The README's Python example, run by ffi/tests/python.rs so it stays true.
from spike_sdk import Client, NotFoundError

with Client() as spike:  # SPIFFE_ENDPOINT_SOCKET, SPIKE_NEXUS_API_URL
    spike.put_secret("app/db", {"user": "admin", "pass": "s3cr3t"})
    print(spike.get_secret("app/db")["pass"])  # s3cr3t
    try:
        spike.get_secret("app/missing")
    except NotFoundError as e:
        print("missing:", e.code)  # 303
    print(spike.decrypt(spike.encrypt(b"attack at dawn")))
