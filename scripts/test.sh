#!/usr/bin/env bash
# The project's test command (README and CI run exactly this).
# Installs what the tests need when it is missing, then runs the whole suite: unit tests and
# integration tests that run real CPython, Ruby and CoreCLR processes under the real binary.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v script >/dev/null || need_apt+=(util-linux)   # a real pty for the terminal test
command -v setpriv >/dev/null || need_apt+=(util-linux)  # an unprivileged agent for the ptrace-permission test
command -v readelf >/dev/null || need_apt+=(binutils)    # patching a libpython for the unsupported-version test
command -v ruby >/dev/null || need_apt+=(ruby)           # the Ruby tests run Debian's MRI
command -v mcs >/dev/null || need_apt+=(mono-mcs)        # compiles the C# example for the .NET tests
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "installing: ${need_apt[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# The CPythons the tests run (pyenv, as on this project's machines). A missing one fails the
# run here, loudly, rather than inside a test.
PYENV_ROOT="${PYENV_ROOT:-$HOME/.pyenv}"
missing=()
for v in 2.7 3.6 3.7 3.8 3.9 3.10 3.11 3.12 3.13; do
  ls -d "$PYENV_ROOT/versions/$v".* >/dev/null 2>&1 || missing+=("$v")
done
if [ ${#missing[@]} -gt 0 ]; then
  if command -v pyenv >/dev/null; then
    for v in "${missing[@]}"; do
      echo "installing CPython $v with pyenv (slow)"
      pyenv install -s "$(pyenv install --list | tr -d ' ' | grep -E "^${v//./\\.}\.[0-9]+$" | tail -1)"
    done
  else
    echo "error: CPython ${missing[*]} missing under $PYENV_ROOT/versions and no pyenv to install them" >&2
    exit 1
  fi
fi

# CoreCLR for the .NET tests: PyPI's dotnetcore2 wheels (the only CoreCLR these machines can
# fetch; see ../shared/reference/dotnet-diagnostics.md). 3.1 is the runtime profiled; 2.1 (no
# diagnostics server) checks the "runtime too old" error. tests/dotnet.rs reads the same paths.
export DOTNET31_ROOT="${DOTNET31_ROOT:-$HOME/.cache/dotnet31}"
export DOTNET21_ROOT="${DOTNET21_ROOT:-$HOME/.cache/dotnet21}"
install_coreclr() { # root version
  if [ ! -x "$1/dotnetcore2/bin/dotnet" ]; then
    echo "installing CoreCLR $2 (PyPI dotnetcore2) into $1"
    # pyenv's CPython has pip (Debian's python3 refuses pip installs).
    "$(ls -d "$PYENV_ROOT/versions/3.11".* | tail -1)/bin/python" -m pip install -q --no-deps --target "$1" "dotnetcore2==$2"
  fi
}
install_coreclr "$DOTNET31_ROOT" 3.1.23
install_coreclr "$DOTNET21_ROOT" 2.1.23

# Interpreters built from Debian's sources (the orig tarballs, sha256-checked), fetched from the
# Debian mirror this machine's apt uses, each built once into ~/.cache:
# build_from_debian WHAT POOL_PATH SHA256 SOURCE_DIR PREFIX MAKE_INSTALL_ARG CONFIGURE_ARGS...
debian_mirror() {
  { grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources || true
    grep -hs '^deb ' /etc/apt/sources.list || true; } \
    | awk '{print $2}' | grep -E '/debian/?$' | head -1 || true
}
build_from_debian() {
  local what=$1 pool=$2 sha=$3 dir=$4 prefix=$5 install=$6 mirror src
  shift 6
  mirror=$(debian_mirror)
  if [ -z "$mirror" ]; then
    echo "error: no Debian mirror in apt's sources to fetch $what's source from" >&2
    exit 1
  fi
  echo "building $what from Debian's source into $prefix"
  src=$(mktemp -d)
  curl -fsSL --retry 3 -o "$src/source.tar.xz" "${mirror%/}/pool/main/$pool"
  echo "$sha  $src/source.tar.xz" | sha256sum -c --quiet
  tar -xJf "$src/source.tar.xz" -C "$src"
  (cd "$src/$dir" \
    && ./configure --prefix="$prefix" "$@" >"$src/configure.log" 2>&1 \
    && make -j"$(nproc)" >"$src/make.log" 2>&1 \
    && make install ${install:+"$install"} >"$src/install.log" 2>&1) \
    || { echo "error: building $what failed; the end of its log:" >&2; tail -20 "$src"/*.log >&2; exit 1; }
  rm -rf "$src"
}

# Ruby 3.3 (an MRI newer than the distribution's 3.1; trixie's ruby3.3), about 7 minutes on 2
# cores. `make install HAVE_BASERUBY=no`: a plain `make install` tries to download bundled gems
# and hangs here.
export RUBY33_ROOT="${RUBY33_ROOT:-$HOME/.cache/ruby33}"
[ -x "$RUBY33_ROOT/bin/ruby" ] || build_from_debian "Ruby 3.3.8" \
  r/ruby3.3/ruby3.3_3.3.8.orig.tar.xz e2e1233ad275b7623a05edf23a01192626d1da454bdfe353a28a87acd8ef015c \
  ruby-3.3.8 "$RUBY33_ROOT" HAVE_BASERUBY=no --disable-install-doc --enable-shared

# Free-threaded CPython 3.13 (`--disable-gil`, python3.13t) for the free-threaded tests and the
# error of an unknown free-threaded build, about 3 minutes.
export CPYTHON313T_ROOT="${CPYTHON313T_ROOT:-$HOME/.cache/cpython313t}"
[ -x "$CPYTHON313T_ROOT/bin/python3.13t" ] || build_from_debian "free-threaded CPython 3.13.15" \
  p/python3.13/python3.13_3.13.15.orig.tar.xz 1e66a7945a48390ee4c2a4268a0e4185884059a13c4aab6d148aa208deea4a76 \
  Python-3.13.15 "$CPYTHON313T_ROOT" "" --disable-gil --enable-shared --without-ensurepip \
  --disable-test-modules LDFLAGS="-Wl,-rpath,$CPYTHON313T_ROOT/lib"

# CPython 3.14: no pyenv or Debian build is reachable from these machines; Maven Central has
# JavaCPP's (org.bytedeco:cpython 3.14.3-1.5.13, linux-x86_64: a shared-libpython CPython with
# its standard library, run in place through its $ORIGIN runpath). sha256-checked, unpacked with
# pyenv's Python (no unzip needed).
export CPYTHON314_ROOT="${CPYTHON314_ROOT:-$HOME/.cache/cpython314}"
if [ ! -x "$CPYTHON314_ROOT/bin/python3.14" ]; then
  echo "installing CPython 3.14.3 (Maven Central, org.bytedeco:cpython) into $CPYTHON314_ROOT"
  src=$(mktemp -d)
  curl -fsSL --retry 3 -o "$src/cpython.jar" \
    https://repo1.maven.org/maven2/org/bytedeco/cpython/3.14.3-1.5.13/cpython-3.14.3-1.5.13-linux-x86_64.jar
  echo "eb5f1a6fe2dc498ac18927189a37f28a47b0ba06ae6bd85112eff023fe2eb46f  $src/cpython.jar" | sha256sum -c --quiet
  "$(ls -d "$PYENV_ROOT/versions/3.11".* | tail -1)/bin/python" -m zipfile -e "$src/cpython.jar" "$src/x"
  mkdir -p "$(dirname "$CPYTHON314_ROOT")"
  rm -rf "$CPYTHON314_ROOT"
  mv "$src/x/org/bytedeco/cpython/linux-x86_64" "$CPYTHON314_ROOT"
  chmod +x "$CPYTHON314_ROOT"/bin/*
  rm -rf "$src"
  "$CPYTHON314_ROOT/bin/python3.14" -c 'import sys; assert sys.version_info[:2] == (3, 14), sys.version'
fi

# Grafana Pyroscope for tests/real_server.rs, built once into ~/.cache from its Go module: the
# newest release the Go module proxy serves, built inside the downloaded module so its replace
# directives apply. The proxy answers 403 for github.com/grafana/pyroscope (every version, as
# of 2026-11), so this fails here and on CI; the suite then says it did not run, and why. A
# server built some other way can be given with PYROSCOPE_SERVER_BIN.
export PYROSCOPE_SERVER_BIN="${PYROSCOPE_SERVER_BIN:-$HOME/.cache/pyroscope-server/bin/pyroscope}"
server_missing=""
build_pyroscope_server() {
  local mod version dir src
  for mod in github.com/grafana/pyroscope/v2 github.com/grafana/pyroscope; do
    if ! version=$(go list -m -versions "$mod" 2>&1); then
      server_missing="go list -m -versions $mod: $(echo "$version" | tr -s '\n\t' '  ')"
      continue
    fi
    version=${version##* }
    echo "building Grafana Pyroscope $version from the Go module proxy into $PYROSCOPE_SERVER_BIN"
    if ! dir=$(go mod download -json "$mod@$version" | sed -n 's/.*"Dir": "\(.*\)",/\1/p') || [ -z "$dir" ]; then
      server_missing="go mod download $mod@$version failed"
      continue
    fi
    src="$HOME/.cache/pyroscope-server/src/$version"
    rm -rf "$src" && mkdir -p "$(dirname "$src")" && cp -r "$dir" "$src" && chmod -R u+w "$src"
    if (cd "$src" && CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -o "$PYROSCOPE_SERVER_BIN" ./cmd/pyroscope); then
      server_missing=""
      return 0
    fi
    server_missing="go build ./cmd/pyroscope of $mod@$version failed"
  done
  return 1
}
if [ ! -x "$PYROSCOPE_SERVER_BIN" ]; then
  if ! command -v go >/dev/null; then
    server_missing="no Go toolchain"
  else
    build_pyroscope_server || true
  fi
fi

status=0
cargo test --release --workspace --no-fail-fast "$@" || status=$?
if [ -x "$PYROSCOPE_SERVER_BIN" ]; then
  echo "tests/real_server.rs against Grafana Pyroscope at $PYROSCOPE_SERVER_BIN"
  cargo test --release --test real_server -- --include-ignored || status=$?
else
  echo "========================================================================"
  echo "tests/real_server.rs NOT RUN (5 tests against a real Grafana Pyroscope):"
  echo "  the server could not be built: $server_missing"
  echo "  set PYROSCOPE_SERVER_BIN to a Grafana Pyroscope binary to run them."
  echo "========================================================================"
fi
exit $status
