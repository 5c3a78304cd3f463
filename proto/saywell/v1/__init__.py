"""Generated gRPC contract, package saywell.v1 (do not edit the *_pb2 files)."""
