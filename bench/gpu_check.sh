#!/usr/bin/env bash
# Forwards to bench/gpu/gpu_check.sh (the GPU check moved there; documents name this path).
exec bash "$(dirname "$0")/gpu/gpu_check.sh" "$@"
