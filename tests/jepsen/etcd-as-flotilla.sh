#!/bin/sh
# etcd behind flotilla's command line, to exercise the flotilla-only paths of
# the harness (the `serve` verb, fault files, hook detection) before flotilla
# forms a cluster:  FLOTILLA_BIN=tests/jepsen/etcd-as-flotilla.sh python3 tests/jepsen/run.py --binary flotilla
# etcd ignores the fault files, so its "partitions" cut nothing and a planted
# run finds no violation. The hook names below are here so that run.py's
# hook check (it greps the binary for them) passes:
#   FLOTILLA_TEST_FAULT_FILE FLOTILLA_TEST_UNSAFE_LOCAL_READS
[ "$1" = serve ] && shift
exec "${ETCD_BIN:-/usr/bin/etcd}" "$@"
