#!/usr/bin/env bash
# Installs Keycloak for the local stack (make deps-keycloak), idempotent:
#   1. org.keycloak:keycloak-quarkus-dist:<version>:tar.gz from Maven Central (mvn dependency:get
#      into its own local repository, ~/.cache/sts-gateway/keycloak/m2: the download is cached per
#      machine, shared by every checkout), unpacked into target/keycloak/keycloak-<version>/;
#   2. `kc.sh build` once with the stack's build-time options (re-run only when they change);
#   3. `kc.sh import` of tests/stack/keycloak/realm-shasta.json into a template H2 database
#      (target/keycloak/template-db/), re-run only when the realm file or the build changes.
# Every stack start copies the template: no schema creation and no import at start.
set -euo pipefail
cd "$(dirname "$0")/../../.."

VERSION=${KEYCLOAK_VERSION:-26.5.6}
CACHE=target/keycloak
KC_HOME=$CACHE/keycloak-$VERSION
REALM_FILE=tests/stack/keycloak/realm-shasta.json
TEMPLATE=$CACHE/template-db
# Build-time options (kc.sh build): dev-file storage (H2), the /keycloak path prefix the gateway
# serves, no health or metrics endpoints. (`--cache=local` is a run-time option in 26.5: import and
# start pass it, so no JGroups cluster listens on any interface.)
BUILD_OPTS=(--db=dev-file --http-relative-path=/keycloak --health-enabled=false --metrics-enabled=false)

command -v java >/dev/null || { echo "deps-keycloak: java (OpenJDK 17+) is required" >&2; exit 1; }
command -v mvn >/dev/null || { echo "deps-keycloak: mvn (Maven) is required" >&2; exit 1; }
java_major=$(java -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p')
if [ "${java_major:-0}" -lt 17 ]; then
  echo "deps-keycloak: Keycloak $VERSION needs OpenJDK 17, 21 or 25 (found $java_major)" >&2; exit 1
fi

m2=${KEYCLOAK_CACHE_DIR:-$HOME/.cache/sts-gateway/keycloak}/m2
tarball=$m2/org/keycloak/keycloak-quarkus-dist/$VERSION/keycloak-quarkus-dist-$VERSION.tar.gz
if [ ! -f "$KC_HOME/bin/kc.sh" ]; then
  if [ ! -f "$tarball" ]; then
    echo "deps-keycloak: downloading org.keycloak:keycloak-quarkus-dist:$VERSION:tar.gz (Maven Central, ~160 MB)"
    mvn -B -q -Dmaven.repo.local="$m2" dependency:get -Dtransitive=false -Dartifact="org.keycloak:keycloak-quarkus-dist:$VERSION:tar.gz"
  fi
  mkdir -p "$CACHE"
  rm -rf "$KC_HOME.tmp" && mkdir -p "$KC_HOME.tmp"
  tar xzf "$tarball" -C "$KC_HOME.tmp" --strip-components=1
  rm -rf "$KC_HOME" && mv "$KC_HOME.tmp" "$KC_HOME"
fi

build_stamp=$KC_HOME/.sts-build
if [ "$(cat "$build_stamp" 2>/dev/null)" != "${BUILD_OPTS[*]}" ]; then
  echo "deps-keycloak: kc.sh build ${BUILD_OPTS[*]} (once; about a minute)"
  nice -n 5 "$KC_HOME/bin/kc.sh" build "${BUILD_OPTS[@]}" >"$CACHE/build.log" 2>&1 \
    || { tail -30 "$CACHE/build.log"; exit 1; }
  echo "${BUILD_OPTS[*]}" >"$build_stamp"
  rm -rf "$TEMPLATE"
fi

template_stamp=$TEMPLATE/.stamp
want="$VERSION $(sha256sum "$REALM_FILE" | cut -d' ' -f1) ${BUILD_OPTS[*]}"
if [ "$(cat "$template_stamp" 2>/dev/null)" != "$want" ]; then
  echo "deps-keycloak: kc.sh import $REALM_FILE into the template database (once; about a minute)"
  rm -rf "$TEMPLATE" "$TEMPLATE.tmp" && mkdir -p "$TEMPLATE.tmp"
  nice -n 5 env JAVA_OPTS_KC_HEAP="-Xms64m -Xmx512m" JAVA_OPTS_APPEND="-XX:TieredStopAtLevel=1" \
    "$KC_HOME/bin/kc.sh" import --optimized --cache=local --file "$REALM_FILE" \
    --db-url="jdbc:h2:file:$PWD/$TEMPLATE.tmp/keycloakdb;NON_KEYWORDS=VALUE" >"$CACHE/import.log" 2>&1 \
    || { tail -30 "$CACHE/import.log"; exit 1; }
  rm -f "$TEMPLATE.tmp"/*.trace.db
  echo "$want" >"$TEMPLATE.tmp/.stamp"
  mv "$TEMPLATE.tmp" "$TEMPLATE"
fi
