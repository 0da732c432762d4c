#!/usr/bin/env bash
# Builds kinfer's container images without a Docker engine (`make images` where `docker info` fails), for the
# test bed's real node (tests/testbed/README.md):
#   base      a Debian bookworm root filesystem from mmdebstrap (this machine's apt sources) with python3,
#             python3-venv, ca-certificates and libstdc++6 (TensorFlow): the PYTHON_IMAGE build argument of both
#             Dockerfiles, in place of python:3.11-slim-bookworm (same Debian, same Python minor)
#   pause     the pod sandbox image: the static pause binary of tests/testbed/build.sh (node/pause.c), alone
#   runtime   images/runtime.Dockerfile      operator  images/operator.Dockerfile   (buildah bud with runc)
#   tfserving-standin   images/tfserving-standin.Dockerfile: the TF Serving stand-in of tests/tfserving/ (a test
#             double, never published) on this tree's runtime image, for pods of `serving.mode: tfserving`
#   NAME=DOCKERFILE   any other Dockerfile of the repository, as localhost/kinfer/NAME:$TAG (dockerfile_image)
#   verify    runs the runtime image as a pod would (uid of the image, read-only root, no capabilities)
#   check     builds nothing: prints the images of this tree, or fails saying `make images`
# Each image lands in ${KINFER_CACHE:-~/.cache/kinfer}/image-<name>-<hash>/image.oci.tar, where <hash> covers its
# inputs (the Dockerfile, every file it COPYs, the base image, runc), so an unchanged tree builds nothing. Python
# wheels are downloaded once on the host into $CACHE/wheels-cp311/ and offered to pip inside the build steps as
# find-links: a rebuild downloads nothing. Prints "<name> <image ref> <archive>" for every image asked for.
#
#   images/build.sh [all|base|pause|runtime|operator|tfserving-standin|verify|check|NAME=DOCKERFILE]...  (default: all)
#   images/build.sh run REF [--no-entrypoint] [ARG]...   one command in an image, as `verify` runs them
#   images/build.sh inspect REF | size REF                the image's configuration (buildah inspect), its size
# Environment: KINFER_IMAGE_TAG (dev), KINFER_IMAGES_OFFLINE=1 (wheel directory only, no network in builds),
# KINFER_IMAGES_STALE_OK=1 (check: the newest image of a name when this tree's is not built, with a warning).
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=../tests/testbed/versions.env
. "$REPO/tests/testbed/versions.env"
CACHE=${KINFER_CACHE:-$HOME/.cache/kinfer}
RUNC=$CACHE/runc-$RUNC_VERSION/runc
PAUSE_DIR=$CACHE/pause-$(sha256sum "$REPO/tests/testbed/node/pause.c" | cut -c1-12)
WHEELS=$CACHE/wheels-cp311
# buildah keeps its own storage under the cache (not /var/lib/containers), so removing the cache removes it.
BUILDAH=(nice -n 10 buildah --root "$CACHE/buildah/storage" --runroot /run/kinfer-buildah --storage-driver overlay)
TAG=${KINFER_IMAGE_TAG:-dev}
BASE_REF=localhost/kinfer/python:3.11-bookworm
PYTHON=$REPO/.venv/bin/python
[[ -x $PYTHON ]] || PYTHON=python3.11

log() { printf '[images %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "$*"; exit 1; }

CHECK_ONLY=0
# image_once NAME HASH REF FN [ARG]...: run `FN ARG... REF ARCHIVE` unless $CACHE/image-NAME-HASH/.done exists;
# like tests/testbed/build.sh's run_once, it builds into a temporary directory that is renamed when complete.
image_once() {
  local name=$1 hash=$2 ref=$3 dir="$CACHE/image-$1-$2"; shift 3
  if [[ ! -f $dir/.done ]]; then
    if ((CHECK_ONLY)); then
      local newest
      newest=$(ls -td "$CACHE/image-$name"-*/.done 2>/dev/null | head -1 || true)
      if [[ ${KINFER_IMAGES_STALE_OK:-0} == 1 && -n $newest ]]; then
        dir=$(dirname "$newest")
        log "warning: image $name is not built for this tree (inputs $hash); using $dir (KINFER_IMAGES_STALE_OK=1)"
      else
        die "image $name is not built for this tree (inputs $hash): run \`make images\`"
      fi
    else
      log "building $name ($ref, inputs $hash; cold)"
      local start=$SECONDS tmp="$dir.tmp.$$"
      rm -rf "$tmp"; mkdir -p "$tmp"
      "$@" "$ref" "$tmp/image.oci.tar"
      echo "$ref" > "$tmp/ref"
      "${BUILDAH[@]}" inspect --type image --format '{{.FromImageID}}' "$ref" > "$tmp/id"
      touch "$tmp/.done"; rm -rf "$dir"; mv "$tmp" "$dir"
      log "built $name in $((SECONDS - start)) s: $(du -h "$dir/image.oci.tar" | cut -f1) archive"
      # Keep this build and the one before (another branch, KINFER_IMAGES_STALE_OK); older archives go.
      ls -td "$CACHE/image-$name"-*/.done | tail -n +3 | xargs -r dirname | xargs -r rm -rf
    fi
  fi
  # The storage's REF must be this build (a later build's FROM, verify, run): retag it, or load the archive.
  # `check` only reads: it must not move a tag under a build that runs meanwhile.
  local id have
  id=$(cat "$dir/id")
  have=$("${BUILDAH[@]}" inspect --type image --format '{{.FromImageID}}' "$ref" 2>/dev/null || true)
  if [[ $have != "$id" ]] && ((!CHECK_ONLY)); then
    "${BUILDAH[@]}" tag "$id" "$ref" >/dev/null 2>&1 || "${BUILDAH[@]}" pull -q "oci-archive:$dir/image.oci.tar" >/dev/null
  fi
  IMAGE_ID=$id
  printf '%s %s %s\n' "$name" "$ref" "$dir/image.oci.tar"
}

push_archive() { # REF ARCHIVE
  # zstd: gzip of the 2 GB runtime image took minutes of CPU; containerd 2 unpacks zstd layers.
  "${BUILDAH[@]}" push -q --compression-format zstd "$1" "oci-archive:$2:$1" >/dev/null
}

# ---- base -----------------------------------------------------------------------------------------------------
# libstdc++6: TensorFlow needs it; python:3.11-slim has it through apt, the essential variant has no apt.
BASE_PACKAGES=passwd,python3,python3-venv,python-is-python3,ca-certificates,libstdc++6
BASE_SOURCES=/etc/apt/sources.list.d/debian.sources
BASE_APTOPT=/etc/apt/apt.conf.d/99artifact-registry
base_hash() {
  { echo "bookworm essential $BASE_PACKAGES merged-usr nodocs no-apt-config v2"; cat "$BASE_SOURCES"
    cat "$BASE_APTOPT" 2>/dev/null || true; } | sha256sum | cut -c1-12
}
build_base() { # REF ARCHIVE
  local work aptopt=()
  work=$(mktemp -d /var/tmp/kinfer-base.XXXXXX)
  [[ -f $BASE_APTOPT ]] && aptopt=(--aptopt="$BASE_APTOPT")
  # essential + the packages: no apt, no perl (minbase's usrmerge pulls in perl; the merged-usr hook does not).
  # This machine's apt sources and options are removed from the image: they describe the build host, not it.
  # shellcheck disable=SC2016 # $1 is expanded by mmdebstrap's hook shell
  nice -n 10 mmdebstrap --quiet --variant=essential --include="$BASE_PACKAGES" "${aptopt[@]}" \
    --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*' \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/* "$1"/var/log/* "$1"/etc/machine-id' \
    --customize-hook='rm -f "$1"/etc/apt/apt.conf.d/99mmdebstrap "$1"/etc/apt/sources.list.d/*' \
    bookworm "$work/rootfs.tar" "$BASE_SOURCES"
  local ctr
  ctr=$("${BUILDAH[@]}" from scratch)
  "${BUILDAH[@]}" add "$ctr" "$work/rootfs.tar" / >/dev/null
  "${BUILDAH[@]}" config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --env LANG=C.UTF-8 \
    --cmd python3 --os linux --arch amd64 --label org.opencontainers.image.title=kinfer-python-base "$ctr"
  "${BUILDAH[@]}" commit -q --rm "$ctr" "$1" >/dev/null
  push_archive "$1" "$2"
  rm -rf "$work"
}

# ---- pause ----------------------------------------------------------------------------------------------------
build_pause() { # REF ARCHIVE
  local ctr
  ctr=$("${BUILDAH[@]}" from scratch)
  "${BUILDAH[@]}" copy "$ctr" "$PAUSE_DIR/pause" /pause >/dev/null
  "${BUILDAH[@]}" config --entrypoint '["/pause"]' --cmd '' --user 65535:65535 --os linux --arch amd64 "$ctr"
  "${BUILDAH[@]}" commit -q --rm "$ctr" "$1" >/dev/null
  push_archive "$1" "$2"
}

# ---- Dockerfile images ----------------------------------------------------------------------------------------
# The COPY sources of a Dockerfile (build-context paths; COPY --from=... excluded).
copy_sources() {
  awk 'toupper($1)=="COPY" && $2 !~ /^--from/ { for (i = 2; i < NF; i++) if ($i !~ /^--/) print $i }' "$1"
}
# A content hash of a Dockerfile and the files it COPYs (.dockerignore leaves out caches: so does this).
context_hash() { # DOCKERFILE EXTRA...
  local dockerfile=$1; shift
  {
    cat "$dockerfile"; printf '%s\n' "$@"
    (cd "$REPO" && copy_sources "$dockerfile" | sort -u | xargs -r find -L | sort |
      grep -v -E '(^|/)__pycache__(/|$)|\.pyc$' | while read -r f; do
        [[ -f $f ]] && printf '%s %s\n' "$(sha256sum < "$f" | cut -c1-64)" "$f"
      done)
  } | sha256sum | cut -c1-12
}

# Wheels for what the Dockerfiles pip-install, downloaded once on the host (Python 3.11 and x86_64, like the
# image): the project's dependencies under constraints.txt, and every name==version a Dockerfile pins (without
# their dependencies: tensorflow-serving-api is installed --no-deps). Keyed by exactly those requirements.
fill_wheels() {
  local requirements pins key
  requirements=$("$PYTHON" -c 'import sys, tomllib
project = tomllib.load(open(sys.argv[1], "rb"))
print(" ".join(project["project"]["dependencies"] + project["build-system"]["requires"]))' "$REPO/pyproject.toml")
  pins=$(grep -ohE '\b[A-Za-z0-9_.-]+==[0-9][0-9A-Za-z.]*' "$REPO"/images/*.Dockerfile | sort -u | tr '\n' ' ')
  key=$({ echo "$requirements"; echo "$pins"; cat "$REPO/constraints.txt"; } | sha256sum | cut -c1-12)
  [[ -f $WHEELS/.done-$key ]] && return 0
  log "downloading wheels into $WHEELS (requirements $key)"
  local start=$SECONDS
  mkdir -p "$WHEELS"
  # shellcheck disable=SC2086 # word splitting of the requirement lists is intended
  (cd "$REPO" && nice -n 10 "$PYTHON" -m pip download -q -d "$WHEELS" -c constraints.txt $requirements &&
    nice -n 10 "$PYTHON" -m pip download -q -d "$WHEELS" --no-deps $pins)
  touch "$WHEELS/.done-$key"
  log "wheels in $((SECONDS - start)) s: $(du -sh "$WHEELS" | cut -f1)"
}

# pip inside a build step: this machine's PIP_* settings as a pip.conf, its certificate file and the wheel
# directory as find-links, bind-mounted (never part of an image). The Dockerfiles set PIP_NO_CACHE_DIR=1 (an ENV,
# stronger than any pip.conf), so a pip cache cannot be used: the wheel directory is what makes rebuilds local.
BUILD_MOUNTS=()
prepare_pip_mounts() {
  local dir=$CACHE/buildah/pip
  mkdir -p "$dir"
  {
    echo "[global]"
    echo "find-links = /run/kinfer-build/wheels"
    [[ -n ${PIP_CERT:-} && -f ${PIP_CERT} ]] && echo "cert = /run/kinfer-build/ca.pem"
    [[ -n ${PIP_DEFAULT_TIMEOUT:-} ]] && echo "timeout = $PIP_DEFAULT_TIMEOUT"
    [[ -n ${PIP_INDEX_URL:-} ]] && echo "index-url = $PIP_INDEX_URL"
    [[ -n ${PIP_EXTRA_INDEX_URL:-} ]] && echo "extra-index-url = $PIP_EXTRA_INDEX_URL"
    echo "disable-pip-version-check = true"
    # KINFER_IMAGES_OFFLINE=1: the wheel directory only, and no network in the build at all.
    [[ ${KINFER_IMAGES_OFFLINE:-0} == 1 ]] && echo "no-index = true"
    true
  } > "$dir/pip.conf"
  BUILD_MOUNTS=(--volume "$dir/pip.conf:/etc/pip.conf:ro" --volume "$WHEELS:/run/kinfer-build/wheels:ro")
  if [[ -n ${PIP_CERT:-} && -f ${PIP_CERT} ]]; then BUILD_MOUNTS+=(--volume "$PIP_CERT:/run/kinfer-build/ca.pem:ro"); fi
}

bud() { # DOCKERFILE REF ARCHIVE
  fill_wheels
  prepare_pip_mounts
  local network=host
  [[ ${KINFER_IMAGES_OFFLINE:-0} == 1 ]] && network=none
  # --layers: a Dockerfile that installs its dependencies before it copies the sources rebuilds only the latter.
  (cd "$REPO" && "${BUILDAH[@]}" bud --runtime "$RUNC" --network "$network" --layers -q \
    --build-arg "PYTHON_IMAGE=$BASE_REF" "${BUILD_MOUNTS[@]}" "${BUD_EXTRA[@]}" -f "$1" -t "$2" . >/dev/null)
  push_archive "$2" "$3"
  # The previous image of this tag is now dangling (its archive stays in the cache): drop it from the storage.
  "${BUILDAH[@]}" rmi --prune >/dev/null 2>&1 || true
}

BUD_EXTRA=()  # more `buildah bud` arguments for the image being built (the stand-in's named context)

# dockerfile_image NAME DOCKERFILE: the hook for every image built from a Dockerfile of the repository (the
# runtime, the operator, and e.g. a stand-in service for tests): localhost/kinfer/NAME:$TAG on the base image.
dockerfile_image() {
  local name=$1 dockerfile=$REPO/${2#"$REPO"/}
  [[ -f $dockerfile ]] || die "no Dockerfile $dockerfile for image $name"
  image_once "$name" "$(context_hash "$dockerfile" "$BASE_ID" "$RUNC_VERSION")" "localhost/kinfer/$name:$TAG" \
    bud "$dockerfile"
}

# ---- run, verify ----------------------------------------------------------------------------------------------
# run_image REF entrypoint|raw ARG...: one command in the image with runc, as a pod runs it: the image's user,
# environment and working directory, a read-only root, a tmpfs /tmp, no capabilities, no new privileges, a
# network namespace with loopback only.
RUN_CTR="" RUN_WORK=""
run_cleanup() {
  if [[ -n $RUN_CTR ]]; then
    "${BUILDAH[@]}" umount "$RUN_CTR" >/dev/null 2>&1 || true
    "${BUILDAH[@]}" rm "$RUN_CTR" >/dev/null 2>&1 || true
  fi
  [[ -z $RUN_WORK ]] || rm -rf "$RUN_WORK"
  rmdir /run/kinfer-image-runc 2>/dev/null || true
}
run_image() {
  local ref=$1 mode=$2 rootfs; shift 2
  [[ -x $RUNC ]] || die "runc is not built: run \`make images\`"
  trap run_cleanup EXIT
  RUN_WORK=$(mktemp -d /var/tmp/kinfer-image-run.XXXXXX)
  RUN_CTR=$("${BUILDAH[@]}" from -q --pull=never "$ref")
  rootfs=$("${BUILDAH[@]}" mount "$RUN_CTR")
  "${BUILDAH[@]}" inspect --type image "$ref" > "$RUN_WORK/image.json"
  (cd "$RUN_WORK" && "$RUNC" spec)
  python3 - "$RUN_WORK" "$rootfs" "$mode" "$@" <<'EOF'
import json, sys
work, rootfs, mode, args = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
image = json.load(open(f"{work}/image.json"))["OCIv1"]["config"]
user = image.get("User") or "0"
uid, _, gid = user.partition(":")
if not uid.isdigit() or not (gid or uid).isdigit():
    sys.exit(f"the image's user {user!r} is not numeric (the pods' runAsUser is)")
command = (image.get("Entrypoint") or []) if mode == "entrypoint" else []
command += args or image.get("Cmd") or []
spec = json.load(open(f"{work}/config.json"))
spec["root"] = {"path": rootfs, "readonly": True}
spec["process"].update(terminal=False, args=command, env=image.get("Env", []), cwd=image.get("WorkingDir") or "/",
                       user={"uid": int(uid), "gid": int(gid or uid)}, noNewPrivileges=True)
spec["process"]["capabilities"] = {kind: [] for kind in spec["process"]["capabilities"]}
spec["mounts"].append({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
                       "options": ["nosuid", "nodev", "mode=1777", "size=64m"]})
spec["hostname"] = "kinfer-image-run"
json.dump(spec, open(f"{work}/config.json", "w"), indent=1)
EOF
  "$RUNC" --root /run/kinfer-image-runc run --bundle "$RUN_WORK" "kinfer-image-run-$$"
}

verify_runtime() {
  local ref=localhost/kinfer/runtime:$TAG
  log "verify: kinfer --help"
  (run_image "$ref" entrypoint --help) | head -3
  log "verify: uid, TensorFlow, the example model, a read-only root"
  (run_image "$ref" raw python -c 'import os, tensorflow as tf
print("uid", os.getuid(), "gid", os.getgid(), "tf", tf.__version__, "HOME", os.environ.get("HOME"))
model = tf.saved_model.load("/opt/kinfer/models/fraud/2")
print("model signatures", list(model.signatures))
try:
    open("/should-fail", "w")
except OSError as error:
    print("read-only root:", error)
else:
    raise SystemExit("the root filesystem is writable")')
}

# ---- main -----------------------------------------------------------------------------------------------------
if [[ ${1:-} == inspect ]]; then
  exec "${BUILDAH[@]}" inspect --type image "${2:?usage: images/build.sh inspect REF}"
fi
if [[ ${1:-} == size ]]; then
  exec "${BUILDAH[@]}" images --format '{{.Size}}' "${2:?usage: images/build.sh size REF}"
fi
if [[ ${1:-} == run ]]; then
  shift
  ref=${1:?usage: images/build.sh run REF [--no-entrypoint] [ARG]...}
  shift
  mode=entrypoint
  if [[ ${1:-} == --no-entrypoint ]]; then mode=raw; shift; fi
  run_image "$ref" "$mode" "$@"
  exit
fi

WHAT=("${@:-all}")
want() { local w; for w in "${WHAT[@]}"; do [[ $w == all || $w == "$1" ]] && return 0; done; return 1; }
if [[ " ${WHAT[*]} " == *" check "* ]]; then
  CHECK_ONLY=1
  command -v buildah >/dev/null || die "buildah is not installed: run \`make images\`"
  [[ -x $PAUSE_DIR/pause ]] || die "the pause binary is not built: run \`make images\`"
else
  bash "$REPO/tests/testbed/install-packages.sh" images
  # runc runs the build steps (Debian's runc 1.1.5 fails them); pause is the sandbox image's one file.
  bash "$REPO/tests/testbed/build.sh" runc pause
fi
IMAGE_ID=""
image_once base "$(base_hash)" "$BASE_REF" build_base >/dev/null
BASE_ID=$IMAGE_ID
if want base; then image_once base "$(base_hash)" "$BASE_REF" build_base; fi
if want pause; then
  image_once pause "$(sha256sum "$PAUSE_DIR/pause" | cut -c1-12)" localhost/kinfer/pause:1 build_pause
fi
if want runtime; then dockerfile_image runtime images/runtime.Dockerfile; fi
if want operator; then dockerfile_image operator images/operator.Dockerfile; fi
if want tfserving-standin; then
  # FROM this tree's runtime image; tests/tfserving/ comes in as the named build context `standin` (.dockerignore
  # keeps tests/ out of the main one), so its files are hashed here rather than found by copy_sources.
  dockerfile_image runtime images/runtime.Dockerfile >/dev/null
  standin_sources=$(cd "$REPO" && find tests/tfserving -name '*.py' | sort | xargs sha256sum | sha256sum | cut -c1-12)
  BUD_EXTRA=(--build-context "standin=tests/tfserving" --build-arg "RUNTIME_IMAGE=localhost/kinfer/runtime:$TAG")
  image_once tfserving-standin \
    "$(context_hash "$REPO/images/tfserving-standin.Dockerfile" "$IMAGE_ID" "$standin_sources" "$RUNC_VERSION")" \
    "localhost/kinfer/tfserving-standin:$TAG" bud "$REPO/images/tfserving-standin.Dockerfile"
  BUD_EXTRA=()
fi
for w in "${WHAT[@]}"; do
  case $w in
    *=*) dockerfile_image "${w%%=*}" "${w#*=}" ;;
    verify) verify_runtime ;;
    all | base | pause | runtime | operator | tfserving-standin | check) ;;
    *) die "unknown image $w (all, base, pause, runtime, operator, tfserving-standin, NAME=DOCKERFILE, verify, check; or: run REF ...)" ;;
  esac
done
