#!/usr/bin/env bash
# Regenerates every *.pb.go from the project's .proto files with protoc from
# Debian and the Go plugins pinned in tools/protoc. Generated code is
# committed, so only someone changing a .proto needs this.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
"$top/scripts/apt.sh" protoc
bin="$top/.cache/bin"
mkdir -p "$bin"
(cd "$top/tools/protoc" && go build -o "$bin/" google.golang.org/protobuf/cmd/protoc-gen-go google.golang.org/grpc/cmd/protoc-gen-go-grpc)
cd "$top"
mapfile -t protos < <(git ls-files --cached --others --exclude-standard '*.proto')
[ ${#protos[@]} -eq 0 ] && exit 0
PATH="$bin:$PATH" protoc -I . --go_out=. --go_opt=paths=source_relative \
  --go-grpc_out=. --go-grpc_opt=paths=source_relative "${protos[@]}"
echo "generated from ${#protos[@]} proto files"
