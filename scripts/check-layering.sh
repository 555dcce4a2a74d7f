#!/usr/bin/env bash
# Fails when a source file includes a project header across a forbidden arrow
# (docs/architecture.md): each folder may include only the folders listed for it below.
# Usage: scripts/check-layering.sh [SOURCE_ROOT]   (default: this checkout)
set -euo pipefail
root=${1:-"$(dirname "$0")/.."}
cd "$root"

ground="core/base core/config core/text core/data core/formats core/checkpoint"
engine="core/train $ground models memory parallel kernels"
# folder -> the project folders its files may include (its own always allowed)
declare -A allowed=(
  [core]=""  # files directly in core/ (the precompiled-header anchor)
  [kernels]="core/base"
  [parallel]="kernels core/base"
  [models]="parallel kernels core/base"
  [memory]="models parallel kernels core/base core/config core/checkpoint core/formats"
  [core/base]=""
  [core/config]="core/base"
  [core/text]="core/base"
  [core/data]="core/text core/config core/base"
  [core/formats]="models core/base"
  [core/checkpoint]="core/formats core/config core/base"
  [core/train]="$engine"
  [core/infer]="$engine"
  [core/plan]="$engine"
  [core/report]="core/base"
  [core/serve]="core/infer $engine"
  [cmd]="core/serve core/infer core/plan core/report $engine"
  [tests]="cmd core/serve core/infer core/plan core/report $engine"
)

folder_of() {  # the rule's folder for a path: core/<sub> inside core, else the top folder
  case $1 in
    core/*/*) local rest=${1#core/}; echo "core/${rest%%/*}" ;;
    */*) echo "${1%%/*}" ;;
    *) echo "" ;;
  esac
}

violations=0
while IFS= read -r file; do
  from=$(folder_of "$file")
  [[ -n $from && -v allowed[$from] ]] || continue
  while IFS=: read -r line include; do
    target=$(folder_of "$include")
    [[ -n $target && -v allowed[$target] ]] || continue  # system or generated headers
    [[ $target == "$from" ]] && continue
    if [[ " ${allowed[$from]} " != *" $target "* ]]; then
      echo "$file:$line: includes \"$include\": $from may not depend on $target (allowed: ${allowed[$from]:-nothing})"
      violations=$((violations + 1))
    fi
  done < <(grep -n '^[[:space:]]*#[[:space:]]*include[[:space:]]*"' "$file" | sed -E 's/^([0-9]+):.*"([^"]+)".*/\1:\2/')
done < <(find kernels parallel models memory core cmd tests -type f \( -name '*.h' -o -name '*.cpp' -o -name '*.cu' \) | sort)

if ((violations > 0)); then
  echo "layering: $violations include(s) against the dependency arrows (docs/architecture.md)"
  exit 1
fi
echo "layering: every include follows the dependency arrows"
