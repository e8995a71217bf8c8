#!/bin/sh
# Runs the tests: `tests/run.sh [PYTEST ARGS...]`, the README's test command (.ci/run calls
# it too). tests/test_browser.py drives Debian's Chromium at /usr/bin/chromium through
# Playwright (it never downloads a browser) and fails without it, so a missing Chromium is
# installed first where this can (as root, with apt-get), and otherwise named in one line.
# The catalog tests also run on a throwaway PostgreSQL server (tests/pgserver.py): Debian's
# `postgresql` is installed the same way; without it those tests skip, saying why.
set -eu
cd "$(dirname "$0")/.."

CHROMIUM=/usr/bin/chromium # the browser tests/test_browser.py launches
INSTALL="apt-get install chromium"

if [ ! -x .venv/bin/python ]; then
    echo "tests/run.sh: no .venv/bin/python: set it up with the README's first command" >&2
    exit 1
fi

if [ ! -x "$CHROMIUM" ]; then
    if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
        echo "tests/run.sh: the browser test needs Chromium at $CHROMIUM; install it" \
            "(Debian, Ubuntu: sudo $INSTALL) and run this again" >&2
        exit 1
    fi
    echo "tests/run.sh: installing Chromium for tests/test_browser.py ($INSTALL)" >&2
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } >&2 \
        || [ ! -x "$CHROMIUM" ]; then
        echo "tests/run.sh: $INSTALL did not give Chromium at $CHROMIUM" >&2
        exit 1
    fi
fi

if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "tests/run.sh: installing PostgreSQL for the catalog tests (apt-get install postgresql)" >&2
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql; } >&2 \
            || echo "tests/run.sh: apt-get install postgresql failed: the PostgreSQL catalog tests will skip" >&2
    else
        echo "tests/run.sh: no PostgreSQL (sudo apt-get install postgresql): the PostgreSQL catalog tests will skip" >&2
    fi
fi

exec .venv/bin/python -m pytest "$@"
