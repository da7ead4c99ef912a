#!/usr/bin/env bash
# Regenerates src/portway/wire/_pb from proto/rstream.proto. The protoc inside grpcio-tools is pinned
# so the generated code never needs a newer protobuf runtime than pyproject.toml allows.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q 'grpcio-tools==1.85.1'
out=src/portway/wire/_pb
python3 -m grpc_tools.protoc -Iproto --python_out="$out" --pyi_out="$out" proto/rstream.proto
# Register in a private pool (see _pb/_pool.py) instead of protobuf's default one.
sed -i -e 's/^from google.protobuf import descriptor_pool as _descriptor_pool$/from portway.wire._pb._pool import POOL as _POOL/' \
       -e 's/_descriptor_pool.Default().AddSerializedFile(/_POOL.AddSerializedFile(/' "$out/rstream_pb2.py"
grep -q '_POOL.AddSerializedFile' "$out/rstream_pb2.py"
echo "generated $out/rstream_pb2.py"
