#!/usr/bin/env bash
# Install ffasr into ./.venv (CPU build of torch, no triton).
#   scripts/setup.sh         the tool
#   scripts/setup.sh --dev   plus test and benchmark tools, and (as root) the system packages
#                            the tests use: PortAudio, a PulseAudio virtual microphone, espeak-ng,
#                            and real human speech (Debian's asterisk prompts)
set -euo pipefail
cd "$(dirname "$0")/.."
dev=0; [ "${1:-}" = "--dev" ] && dev=1

apt_packages=(libportaudio2)
[ $dev = 1 ] && apt_packages+=(pulseaudio pulseaudio-utils libasound2-plugins espeak-ng
                               asterisk-core-sounds-en-wav asterisk-core-sounds-en pocketsphinx-testdata)
missing=()
for p in "${apt_packages[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "note: system packages missing (install them as root): ${missing[*]}" >&2
  fi
fi

python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip
requirements=requirements.txt; [ $dev = 1 ] && requirements=requirements-dev.txt
.venv/bin/pip install -q -r "$requirements"
.venv/bin/pip install -q --no-deps openai-whisper==20250625
# holler (the peer in benchmarks/learning.py): its Vocab needs only the standard library
if [ $dev = 1 ]; then .venv/bin/pip install -q --no-deps holler==1.1.0; fi
.venv/bin/pip install -q --no-deps -e .
echo "ffasr installed: $(.venv/bin/ffasr --version)"
