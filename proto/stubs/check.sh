#!/usr/bin/env bash
# Offline mobile-stub check for the saywell contract (issue #19): Debian's protoc and grpc-java plugin generate
# Java messages, Java gRPC stubs and Kotlin messages; they compile against Debian's protobuf-java and grpc-java;
# a tiny Java program (java/StubCheck.java) and a tiny Kotlin one (kotlin/StubCheck.kt) build requests,
# serialise and parse them, and the Java one makes an in-process call through the generated stub.
#
#   proto/stubs/check.sh [--proto-root DIR] [--out DIR] [--no-kotlin]
#
#   --proto-root DIR  the folder holding saywell/**/*.proto (default: proto/ of this repository)
#   --out DIR         generate and compile there and keep it (default: a temporary folder, removed at exit)
#   --no-kotlin       skip the Kotlin part (generation still happens; compiling it is skipped)
#
# Needs: Debian or Ubuntu with apt (missing packages are installed: root, or sudo without a password), a JDK
# (javac; installed from default-jdk-headless when missing), and for Kotlin npm (tools/package.json pins the
# Kotlin compiler) and Debian's source archive (protobuf's Kotlin runtime sources, fetched once and cached).
# Generating and compiling the Java stubs needs no network once the packages are installed.
# Exit status 0 only when every step passed; the last lines name the versions used.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
PROTO_ROOT=$REPO/proto
OUT=""
KOTLIN=1
while (($#)); do
    case $1 in
        --proto-root) PROTO_ROOT=$(cd "$2" && pwd); shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        --no-kotlin) KOTLIN=0; shift ;;
        -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
        *) echo "check.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done

JAVA_SHARE=/usr/share/java
PROTOC=/usr/bin/protoc
GRPC_JAVA_PLUGIN=/usr/bin/grpc_java_plugin
# Debian packages and the jars they put in /usr/share/java (the classpath, in this order):
#   libprotobuf-java                    protobuf.jar (com.google.protobuf)
#   libgrpc-java                        grpc-api, grpc-context, grpc-core (with io.grpc.inprocess), grpc-stub,
#                                       grpc-protobuf, grpc-protobuf-lite (ProtoUtils' marshallers need it)
#   libguava-java                       guava.jar (grpc-java's generated stubs and grpc-core)
#   libperfmark-java                    perfmark-api.jar (grpc-core's calls, at run time)
#   libgeronimo-annotation-1.3-spec-java  geronimo-annotation-1.3-spec.jar (javax.annotation.Generated, on
#                                       the generated *Grpc class; Java 11+ no longer has it)
APT_PACKAGES=(protobuf-compiler protobuf-compiler-grpc-java-plugin libprotobuf-java libgrpc-java libguava-java
              libperfmark-java libgeronimo-annotation-1.3-spec-java)
JARS=(protobuf grpc-api grpc-context grpc-core grpc-stub grpc-protobuf grpc-protobuf-lite guava perfmark-api
      geronimo-annotation-1.3-spec)

say() { printf 'check.sh: %s\n' "$*" >&2; }
die() { printf 'check.sh: FAILED: %s\n' "$*" >&2; exit 1; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f s", b - a }'; }
T0=$(now)

as_root() {
    if ((EUID == 0)); then "$@"
    elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then sudo -n "$@"
    else die "needs root to run: $*"
    fi
}

# --- 1. Debian packages ---------------------------------------------------------------------------------------
installed() { [[ $(dpkg-query -W -f='${db:Status-Abbrev}' "$1" 2>/dev/null) == ii* ]]; }
command -v dpkg-query >/dev/null || die "not a Debian-based system (no dpkg-query); see proto/stubs/README.md"
wanted=("${APT_PACKAGES[@]}")
# Well-known types (google/protobuf/*.proto) come with libprotobuf-dev, only needed once the contract imports them.
if grep -rqs --include='*.proto' 'import .*"google/protobuf/' "$PROTO_ROOT/saywell"; then
    wanted+=(libprotobuf-dev)
fi
command -v javac >/dev/null || wanted+=(default-jdk-headless)
missing=()
for p in "${wanted[@]}"; do installed "$p" || missing+=("$p"); done
if ((${#missing[@]})); then
    T=$(now)
    say "installing ${missing[*]}"
    apt_install() { as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        -o DPkg::Lock::Timeout=300 "${missing[@]}" >&2; }
    if ! apt_install; then
        say "apt-get install failed; apt-get update, then once more"
        as_root apt-get update -q >&2
        apt_install
    fi
    say "installed in $(since "$T")"
fi

# --- 2. Versions: the generators must match the runtimes they are compiled against -----------------------------
deb_version() { dpkg-query -W -f='${Version}' "$1"; }
upstream() { local v=${1#*:}; v=${v%-*}; echo "${v%+ds*}"; }   # 1:3.21.12-3+deb12u1 -> 3.21.12; 1.41.3+ds-1 -> 1.41.3
PROTOC_VERSION=$("$PROTOC" --version | awk '{print $2}')
PROTOBUF_JAVA_VERSION=$(upstream "$(deb_version libprotobuf-java)")
GRPC_PLUGIN_VERSION=$(upstream "$(deb_version protobuf-compiler-grpc-java-plugin)")
GRPC_JAVA_VERSION=$(upstream "$(deb_version libgrpc-java)")
[[ $PROTOC_VERSION == "$PROTOBUF_JAVA_VERSION" ]] \
    || die "$PROTOC is protoc $PROTOC_VERSION but libprotobuf-java is $PROTOBUF_JAVA_VERSION"
[[ $GRPC_PLUGIN_VERSION == "$GRPC_JAVA_VERSION" ]] \
    || die "grpc_java_plugin is $GRPC_PLUGIN_VERSION but libgrpc-java is $GRPC_JAVA_VERSION"
[[ -f $JAVA_SHARE/protobuf-$PROTOBUF_JAVA_VERSION.jar ]] || die "no $JAVA_SHARE/protobuf-$PROTOBUF_JAVA_VERSION.jar"
[[ -f $JAVA_SHARE/grpc-core-$GRPC_JAVA_VERSION.jar ]] || die "no $JAVA_SHARE/grpc-core-$GRPC_JAVA_VERSION.jar"
CLASSPATH_JARS=""
for j in "${JARS[@]}"; do
    [[ -f $JAVA_SHARE/$j.jar ]] || die "missing $JAVA_SHARE/$j.jar"
    CLASSPATH_JARS+=${CLASSPATH_JARS:+:}$JAVA_SHARE/$j.jar
done
say "protoc $PROTOC_VERSION = protobuf-java $PROTOBUF_JAVA_VERSION; grpc-java plugin $GRPC_PLUGIN_VERSION = grpc-java $GRPC_JAVA_VERSION"

# --- 3. Generate ------------------------------------------------------------------------------------------------
if [[ -n $OUT ]]; then
    # Emptied first, but only a folder this script made (its marker) or an empty one: never --out . by mistake.
    if [[ -d $OUT && -n $(ls -A "$OUT") && ! -f $OUT/.saywell-stubs ]]; then
        die "--out $OUT is not empty and was not made by check.sh; give a new folder"
    fi
    rm -rf "$OUT"; mkdir -p "$OUT"; OUT=$(cd "$OUT" && pwd); touch "$OUT/.saywell-stubs"
else
    OUT=$(mktemp -d "${TMPDIR:-/tmp}/saywell-stubs.XXXXXX")
    trap 'rm -rf "$OUT"' EXIT
fi
mapfile -t PROTOS < <(cd "$PROTO_ROOT" && find saywell -name '*.proto' | sort)
((${#PROTOS[@]})) || die "no .proto files under $PROTO_ROOT/saywell"
mkdir -p "$OUT/gen/java" "$OUT/gen/kotlin" "$OUT/classes/java" "$OUT/classes/kotlin"
T=$(now)
(cd "$PROTO_ROOT" && "$PROTOC" -I. \
    --java_out="$OUT/gen/java" \
    --kotlin_out="$OUT/gen/kotlin" \
    --plugin=protoc-gen-grpc-java="$GRPC_JAVA_PLUGIN" --grpc-java_out="$OUT/gen/java" \
    "${PROTOS[@]}") || die "protoc failed on ${PROTOS[*]}"
n_java=$(find "$OUT/gen/java" -name '*.java' | wc -l)
n_grpc=$(find "$OUT/gen/java" -name '*Grpc.java' | wc -l)
n_kt=$(find "$OUT/gen/kotlin" -name '*.kt' | wc -l)
((n_grpc > 0)) || die "protoc generated no *Grpc.java (no service in ${PROTOS[*]}?)"
((n_kt > 0)) || die "protoc generated no Kotlin"
say "generated $n_java Java files ($n_grpc gRPC) and $n_kt Kotlin files in $(since "$T")"

# --- 4. Java: compile and run -------------------------------------------------------------------------------------
T=$(now)
mapfile -t JAVA_SOURCES < <(find "$OUT/gen/java" -name '*.java')
javac -J-XX:TieredStopAtLevel=1 -nowarn -encoding UTF-8 -d "$OUT/classes/java" -cp "$CLASSPATH_JARS" \
    "${JAVA_SOURCES[@]}" "$HERE/java/StubCheck.java" >&2 \
    || die "javac failed: the generated Java or java/StubCheck.java does not compile against Debian's jars"
say "javac in $(since "$T")"
java -cp "$OUT/classes/java:$CLASSPATH_JARS" StubCheck || die "java StubCheck failed"

# --- 5. Kotlin: protobuf's Kotlin runtime from Debian's protobuf source, the generated DSL, kotlin/StubCheck.kt -----
KOTLINC_VERSION=""
if ((KOTLIN)); then
    bash "$REPO/tools/install.sh"
    KOTLIN_HOME=$REPO/tools/node_modules/kotlin-compiler
    [[ -x $KOTLIN_HOME/bin/kotlinc ]] || die "no kotlinc in $KOTLIN_HOME (tools/install.sh)"
    KOTLINC_VERSION=$(node -p "require('$KOTLIN_HOME/package.json').version")

    # protobuf-kotlin (DslList, DslMap, ...) is not packaged in Debian; its sources are in the protobuf source
    # package, the same upstream release as protoc and protobuf.jar. apt-get source verifies them against the
    # archive's signed index; a private apt state (deb-src twins of this system's deb lines) leaves the system's
    # apt configuration alone.
    SRC_PKG=$(dpkg-query -W -f='${source:Package}' libprotobuf-java)
    SRC_VERSION=$(dpkg-query -W -f='${source:Version}' libprotobuf-java)
    CACHE=${SAYWELL_STUBS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/saywell/stubs}
    RUNTIME=$CACHE/protobuf-kotlin-$SRC_VERSION
    if [[ ! -f $RUNTIME/.complete ]]; then
        T=$(now)
        say "fetching $SRC_PKG $SRC_VERSION sources (once; cached in $RUNTIME)"
        A=$(mktemp -d "${TMPDIR:-/tmp}/saywell-aptsrc.XXXXXX")
        mkdir -p "$A/parts" "$A/lists/partial" "$A/cache/archives/partial" "$A/src"
        for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
            [[ -f $f ]] && sed -n 's/^[[:space:]]*deb[[:space:]]/deb-src /p' "$f" >> "$A/parts/src.list"
        done
        for f in /etc/apt/sources.list.d/*.sources; do
            [[ -f $f ]] && sed 's/^Types:.*/Types: deb-src/' "$f" > "$A/parts/$(basename "$f")"
        done
        apt_src=(apt-get -q -o Dir::Etc::SourceList=/dev/null -o Dir::Etc::SourceParts="$A/parts"
                 -o Dir::State::Lists="$A/lists" -o Dir::Cache="$A/cache")
        ((EUID)) || apt_src+=(-o APT::Sandbox::User=root)   # the _apt user cannot write into the temporary folder
        "${apt_src[@]}" update >&2 || say "apt-get update (deb-src) reported errors; trying the download anyway"
        (cd "$A/src" && "${apt_src[@]}" source --download-only "$SRC_PKG=$SRC_VERSION" >&2) \
            || die "apt-get source $SRC_PKG=$SRC_VERSION failed (needs Debian's archive)"
        origs=("$A"/src/"${SRC_PKG}"_*.orig.tar.*)
        orig=${origs[0]}
        [[ -f $orig ]] || die "apt-get source gave no ${SRC_PKG}_*.orig.tar.*"
        mkdir -p "$A/x"
        tar -xf "$orig" -C "$A/x" --wildcards '*/java/kotlin/src/main/kotlin/*'
        rm -rf "$RUNTIME"; mkdir -p "$RUNTIME"
        cp -r "$A"/x/*/java/kotlin/src/main/kotlin/. "$RUNTIME/"
        cp "$A"/src/*.dsc "$RUNTIME/"
        touch "$RUNTIME/.complete"
        rm -rf "$A"
        say "fetched in $(since "$T")"
    fi
    T=$(now)
    # C1 only: a one-shot compiler run is over before C2's optimisations pay off (about half the time).
    JAVA_OPTS="-Xmx768M -XX:TieredStopAtLevel=1" "$KOTLIN_HOME/bin/kotlinc" -nowarn -d "$OUT/classes/kotlin" -cp "$OUT/classes/java:$JAVA_SHARE/protobuf.jar" \
        "$RUNTIME/com" "$OUT/gen/kotlin" "$HERE/kotlin/StubCheck.kt" >&2 \
        || die "kotlinc failed: the generated Kotlin or kotlin/StubCheck.kt does not compile"
    say "kotlinc in $(since "$T")"
    java -cp "$OUT/classes/kotlin:$OUT/classes/java:$JAVA_SHARE/protobuf.jar:$KOTLIN_HOME/lib/kotlin-stdlib.jar" \
        StubCheckKt || die "Kotlin StubCheckKt failed"
else
    say "Kotlin: generated only (--no-kotlin)"
fi

echo "stub check passed in $(since "$T0"): protoc $PROTOC_VERSION, grpc-java plugin $GRPC_PLUGIN_VERSION," \
     "protobuf-java $PROTOBUF_JAVA_VERSION, grpc-java $GRPC_JAVA_VERSION, $(javac -version 2>&1)${KOTLINC_VERSION:+, kotlinc $KOTLINC_VERSION}"
