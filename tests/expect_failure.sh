#!/usr/bin/env bash
# Runs a command that must fail: passes when it exits non-zero (not by a signal) and its output
# matches the regular expression.  Usage: expect_failure.sh REGEX COMMAND [ARGS...]
set -u
regex=$1
shift
output=$("$@" 2>&1)
status=$?
echo "$output"
if ((status == 0)); then
  echo "expect_failure: the command succeeded" >&2
  exit 1
fi
if ((status > 128)); then
  echo "expect_failure: the command died with signal $((status - 128))" >&2
  exit 1
fi
if ! grep -E -q -- "$regex" <<<"$output"; then
  echo "expect_failure: output does not match '$regex'" >&2
  exit 1
fi
