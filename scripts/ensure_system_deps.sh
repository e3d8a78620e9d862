#!/usr/bin/env bash
# ffmpeg and espeak-ng come from the OS: espeak-ng speaks the synthetic narration,
# ffmpeg backs openai-whisper's audio loader. Install them as root, else say how.
set -euo pipefail
missing=()
for tool in ffmpeg espeak-ng; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing ${missing[*]} with apt-get"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
else
  echo "error: missing system tools: ${missing[*]}" >&2
  echo "run: sudo apt-get install -y ${missing[*]}   (or your OS's equivalent), then rerun make" >&2
  exit 1
fi
