#!/usr/bin/env bash
# The PostgreSQL server the annotation store's tests use (REFINERY_TEST_PG, default
# postgresql://postgres@127.0.0.1:5432/test). Does nothing when one answers there; otherwise
# starts this machine's cluster, or installs Debian's postgresql, starts it with trust auth on
# 127.0.0.1 and creates the database `test`. Without apt-get and without a server it says so:
# the PostgreSQL tests then fail naming REFINERY_TEST_PG (REFINERY_ALLOW_SKIP_PG=1 skips them).
set -uo pipefail
ready() { command -v pg_isready >/dev/null && pg_isready -q -h 127.0.0.1 -p 5432; }
ready && exit 0
SUDO=$(test "$(id -u)" = 0 || echo sudo)
if ! command -v pg_ctlcluster >/dev/null; then
  if command -v apt-get >/dev/null; then
    $SUDO apt-get install -y -qq --no-install-recommends postgresql >/dev/null 2>&1 \
      || { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends postgresql >/dev/null; }
  else
    echo "postgres.sh: no PostgreSQL on 127.0.0.1:5432 and no apt-get to install one"; exit 0
  fi
fi
version=$(ls /etc/postgresql | sort -V | tail -1)
conf=/etc/postgresql/$version/main
if ! grep -q "refinery-ci" "$conf/pg_hba.conf"; then
  printf '# refinery-ci\nhost all all 127.0.0.1/32 trust\nhost all all ::1/128 trust\nlocal all all trust\n' \
    | $SUDO tee "$conf/pg_hba.conf.new" >/dev/null
  $SUDO sh -c "cat '$conf/pg_hba.conf' >> '$conf/pg_hba.conf.new' && mv '$conf/pg_hba.conf.new' '$conf/pg_hba.conf'"
fi
$SUDO pg_ctlcluster --skip-systemctl-redirect "$version" main start 2>/dev/null || $SUDO pg_ctlcluster "$version" main start
for _ in $(seq 30); do ready && break; sleep 1; done
psql -h 127.0.0.1 -U postgres -tc "select 1 from pg_database where datname = 'test'" | grep -q 1 \
  || psql -h 127.0.0.1 -U postgres -c "create database test" >/dev/null
ready && echo "postgres.sh: PostgreSQL $version on 127.0.0.1:5432"
