#!/usr/bin/env bash
# Regenerates schemaprovider/schemas/aws.json.gz: the part of the full AWS
# provider schema (../../shared data, `terraform providers schema -json`)
# that terraform/ uses, i.e. the provider block and every aws_* resource and
# data source declared in a .tf file, plus the attributes schemas/aws-patch.json
# restores (see the comment there). Run it after using a new AWS type.
#
#   extract-aws-schema.sh [FULL_SCHEMA] [OUT]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
full=${1:-${AWS_FULL_SCHEMA:-/work/shared/terraform/aws-provider-schema.json.gz}}
out=${2:-$here/schemaprovider/schemas/aws.json.gz}
cd "$here/schemaprovider"
# The extractor is part of the binary that embeds the file it writes: seed it.
[ -f schemas/aws.json.gz ] || printf '{}' | gzip -n >schemas/aws.json.gz
GOFLAGS=-buildvcs=false GOWORK=off go run . extract -in "$full" -out "$out" -prefix aws_ -patch schemas/aws-patch.json \
  "$here/../modules" "$here/../examples"
