#!/usr/bin/env bash
# Regenerates the fleet schema vectors from the .proto and text-format files here, with
# Google's own tools rather than Spillway's code: protoc writes the descriptor set and encodes
# the binary records; Google's Python protobuf runtime writes the proto3 JSON of the valid
# reading (json_format.MessageToJson), the transcoding Spillway's JSON delivery must match.
# The outputs are committed; the tests read them. Run it after changing a .proto or .txtpb.
set -euo pipefail
cd "$(dirname "$0")"
command -v protoc >/dev/null || ../apt-install.sh protobuf-compiler
protoc --descriptor_set_out=fleet.desc --include_imports reading.proto alarm.proto
protoc --encode=fleet.v1.Reading reading.proto < valid.txtpb > valid.bin
# A draft alarm: decodes as an Alarm without its required `code`.
protoc --encode=fleet.v1.AlarmDraft alarm.proto < alarm-draft.txtpb > alarm-draft.bin
python=$(../py-tools.sh python protobuf)
"$python" - <<'PY'
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory

fds = descriptor_pb2.FileDescriptorSet.FromString(open("fleet.desc", "rb").read())
pool = descriptor_pool.DescriptorPool()
for f in fds.file:
    pool.Add(f)
reading = message_factory.GetMessageClass(pool.FindMessageTypeByName("fleet.v1.Reading"))
msg = reading.FromString(open("valid.bin", "rb").read())
open("valid.json", "w").write(json_format.MessageToJson(msg, indent=None) + "\n")
PY
echo "regenerated: fleet.desc valid.bin alarm-draft.bin valid.json"
