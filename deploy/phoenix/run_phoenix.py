#!/usr/bin/env python3
"""Start `phoenix serve` with its OTLP gRPC receiver bound to PHOENIX_HOST.

Phoenix (checked with 20.26.1) binds its web/OTLP-HTTP port to PHOENIX_HOST,
but always binds the OTLP gRPC port to "[::]" (every interface), whatever
PHOENIX_HOST says. For a loopback-only test this wrapper rewrites that one
bind address before starting Phoenix exactly as the `phoenix serve` entry
point would. Run it with the Phoenix venv's python.
"""
import os
import sys

from grpc.aio import _server as _grpc_aio_server

HOST = os.environ.get("PHOENIX_HOST") or "127.0.0.1"
_orig_insecure = _grpc_aio_server.Server.add_insecure_port
_orig_secure = _grpc_aio_server.Server.add_secure_port


def _rebind(address):
    if address.startswith("[::]:"):
        return "%s:%s" % (HOST, address[len("[::]:"):])
    return address


def _add_insecure_port(self, address):
    return _orig_insecure(self, _rebind(address))


def _add_secure_port(self, address, credentials):
    return _orig_secure(self, _rebind(address), credentials)


_grpc_aio_server.Server.add_insecure_port = _add_insecure_port
_grpc_aio_server.Server.add_secure_port = _add_secure_port

from phoenix.server.main import main  # noqa: E402

if __name__ == "__main__":
    sys.argv = ["phoenix", "serve", *sys.argv[1:]]
    sys.exit(main())
