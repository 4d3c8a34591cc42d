"""Python client for xbard, the xbar.v1 gRPC daemon (client/python/README.md).

    from xbar_client import Client, XbarError
    with Client("127.0.0.1:50051") as c:
        print(c.info().serial)
"""

from .client import Client, XbarError

__all__ = ["Client", "XbarError"]
