"""The benchmark harness: `make bench` and `make bench-scale` start switches, Redis, an echo
server and a straightforward reference server, drive them with the generator and report.

It may import switch/ (a private redis-server, the ledger's own calls, the default policy).
"""
